import Catalog
import Crypto
import Foundation
import Testing
import TestSupport

/// The built `wgpm` binary, next to the test bundle.
let wgpm = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("wgpm").path

/// A temporary machine: a Wan2GP directory (the real definitions), empty ckpts/ and loras/,
/// a state directory, a config, a manifest, and a fake Hub serving every file the manifest needs.
final class Machine: @unchecked Sendable {
    let dir: TempDir
    let hub: FakeHub
    let wan2gp: String

    init(manifest: String, hubConfig: [String: Any] = [:], wan2gp: String = wan2gpFixture, extraURLs: [String] = []) throws {
        dir = try TempDir("e2e")
        self.wan2gp = wan2gp
        hub = try FakeHub(root: dir.file("hub"), config: hubConfig)
        let catalog = try Catalog.load(wan2gpDirectory: wan2gpFixture)
        var urls = extraURLs
        for id in ["t2v", "i2v_2_2", "vace_14B"] {
            for q in ModelSettings.Quantization.allCases {
                for d in ModelSettings.DType.allCases {
                    urls += try catalog.expand(id, settings: ModelSettings(transformerQuantization: q, dtype: d)).map(\.url)
                }
            }
        }
        try hub.generate(from: urls.joined(separator: "\n"))
        try writeConfig()
        try dir.write("wgpm.yaml", manifest)
    }

    /// Writes config.yaml: the machine's folders, then `extra` lines (YAML, unindented).
    func writeConfig(_ extra: String = "") throws {
        try dir.write("config.yaml", """
            wan2gp_directory: \(wan2gp)
            ckpts_directory: ckpts
            loras_directory: loras
            state_directory: state

            """ + extra)
    }

    deinit { hub.stop(); dir.remove() }

    func wgpmRun(_ args: [String], env: [String: String] = [:]) throws -> RunResult {
        try run(wgpm, args, environment: ["HF_ENDPOINT": hub.hubURL, "HOME": dir.path].merging(env) { $1 }, cwd: dir.path)
    }

    func planJSON(_ extra: [String] = []) throws -> (RunResult, [String: Any]) {
        let r = try wgpmRun(["plan", "--json", "--detailed-exitcode"] + extra)
        let json = (try? JSONSerialization.jsonObject(with: Data(r.stdout.utf8))) as? [String: Any] ?? [:]
        return (r, json)
    }

    /// Puts the Hub's copy of a repo file at a ckpts path, as a finished download would.
    func place(_ ckptsPath: String, from repoPath: String) throws {
        let data = try Data(contentsOf: URL(fileURLWithPath: hub.root + "/" + repoPath))
        try dir.write(ckptsPath, data)
    }

    func tree() -> [String] {
        let fm = FileManager.default
        var out: [String] = []
        for root in ["ckpts", "loras"] {
            guard let e = fm.enumerator(atPath: dir.file(root)) else { continue }
            while let p = e.nextObject() as? String {
                let attrs = try? fm.attributesOfItem(atPath: dir.file("\(root)/\(p)"))
                out.append("\(root)/\(p) \(attrs?[.size] ?? 0) \(attrs?[.modificationDate] ?? "")")
            }
        }
        return out.sorted()
    }
}

let manifestText = """
    version: 1
    settings:
      transformer_quantization: int8
    models:
      - t2v
      - id: i2v_2_2
        transformer_quantization: bf16
    files:
      - url: https://huggingface.co/extra/loras/resolve/main/style/painterly.safetensors
        path: loras/wan/painterly.safetensors
    """

func actions(_ json: [String: Any]) -> [[String: Any]] { json["actions"] as? [[String: Any]] ?? [] }

@Test func planAgainstTheFakeHubEndToEnd() throws {
    let m = try Machine(manifest: manifestText,
                        extraURLs: ["https://huggingface.co/extra/loras/resolve/main/style/painterly.safetensors"])
    let (first, json) = try m.planJSON()
    #expect(first.status == 2, "changes present: \(first.stderr)")
    #expect(json["format_version"] as? Int == 1)
    let list = actions(json)
    let paths = list.compactMap { $0["path"] as? String }
    #expect(paths == paths.sorted())
    #expect(paths.count == 40, "t2v 37 + i2v_2_2 pair 2 + 1 extra file (shared files deduplicated)")
    #expect(paths.contains("ckpts/wan2.2_image2video_14B_high_mbf16.safetensors"))
    #expect(paths.contains("ckpts/wan2.1_text2video_14B_quanto_mbf16_int8.safetensors"))
    #expect(paths.contains("loras/wan/painterly.safetensors"))
    #expect(list.allSatisfy { $0["action"] as? String == "download" })
    // Sizes and hashes are the Hub's real identities of the served bytes.
    let vae = try #require(list.first { $0["path"] as? String == "ckpts/Wan2.1_VAE.safetensors" })
    let served = try Data(contentsOf: URL(fileURLWithPath: m.hub.root + "/DeepBeepMeep/Wan2.1/Wan2.1_VAE.safetensors"))
    #expect(vae["size"] as? Int == served.count)
    #expect(vae["sha256"] as? String == SHA256.hash(data: served).map { String(format: "%02x", $0) }.joined())
    #expect((vae["wanted_by"] as? [String]) == ["i2v_2_2", "t2v"])
    let tokenizer = try #require(list.first { $0["path"] as? String == "ckpts/umt5-xxl/tokenizer_config.json" })
    #expect((tokenizer["git_sha1"] as? String)?.count == 40 && tokenizer["sha256"] == nil)
    let summary = try #require(json["summary"] as? [String: Any])
    #expect((summary["counts"] as? [String: Int])?["download"] == 40)
    #expect((summary["download_bytes"] as? Int ?? 0) > 0)

    // A second plan asks the Hub nothing; --refresh asks again.
    let before = m.hub.requests().count
    let (_, again) = try m.planJSON()
    #expect(m.hub.requests().count == before)
    #expect((again["stats"] as? [String: Any])?["hub_requests"] as? Int == 0)
    _ = try m.planJSON(["--refresh"])
    #expect(m.hub.requests().count > before)
    #expect(m.hub.requests().allSatisfy { $0.listener == "hub" && $0.method != "GET" || !$0.path.contains("/resolve/") },
            "plan never downloads")
}

@Test func planSeesWhatIsOnDiskAndChangesNothing() throws {
    let m = try Machine(manifest: "version: 1\nmodels:\n  - t2v\n")
    try m.place("ckpts/Wan2.1_VAE.safetensors", from: "DeepBeepMeep/Wan2.1/Wan2.1_VAE.safetensors")
    try m.place("ckpts/umt5-xxl/spiece.model", from: "DeepBeepMeep/Wan2.1/umt5-xxl/spiece.model")
    try m.dir.write("ckpts/umt5-xxl/tokenizer.json", "not the tokenizer")
    try FileManager.default.createDirectory(atPath: m.dir.file("ckpts/xlm-roberta-large/tokenizer.json"), withIntermediateDirectories: true)
    try FileManager.default.createDirectory(atPath: m.dir.file("ckpts/flow"), withIntermediateDirectories: true)
    try FileManager.default.createSymbolicLink(atPath: m.dir.file("ckpts/flow/raft-things.pth"), withDestinationPath: "/nonexistent/raft")
    let treeBefore = m.tree()
    let (r, json) = try m.planJSON(["-o", "saved-plan.json"])
    #expect(r.status == 3, "a conflict blocks apply: not 'changes to review'")
    let byPath = Dictionary(uniqueKeysWithValues: actions(json).map { ($0["path"] as! String, $0) })
    #expect(byPath["ckpts/Wan2.1_VAE.safetensors"] == nil)
    #expect((json["unchanged"] as? [String]) == ["ckpts/Wan2.1_VAE.safetensors", "ckpts/umt5-xxl/spiece.model"])
    #expect(byPath["ckpts/umt5-xxl/tokenizer.json"]?["action"] as? String == "replace")
    #expect(byPath["ckpts/xlm-roberta-large/tokenizer.json"]?["action"] as? String == "conflict")
    #expect(byPath["ckpts/flow/raft-things.pth"]?["action"] as? String == "replace")
    #expect((byPath["ckpts/flow/raft-things.pth"]?["reason"] as? String)?.contains("dangling") == true)
    #expect(m.tree() == treeBefore, "plan changes nothing in ckpts/ or loras/")
    let saved = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: m.dir.file("saved-plan.json")))) as? [String: Any]
    #expect((saved?["fingerprint"] as? [String: String])?["manifest_content_sha256"]?.count == 64)
    #expect(saved?["format_version"] as? Int == 1)

    // The human form names each action and ends with the summary.
    let human = try m.wgpmRun(["plan"], env: ["NO_COLOR": "1"])
    #expect(human.status == 0)
    #expect(human.stdout.contains("~ replace   ckpts/umt5-xxl/tokenizer.json"))
    #expect(human.stdout.contains("! conflict  ckpts/xlm-roberta-large/tokenizer.json"))
    #expect(human.stdout.contains("Plan: 32 to download"))
    let joined = human.stdout.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }.joined(separator: " ")
    #expect(joined.contains("2 to replace (12.5 KB to fetch), 0 to remove, 2 unchanged. 1 conflict needs attention."), "\(human.stdout)")
    // Rows fit 80 columns: a row that cannot has its details on the next line, under the path.
    for line in human.stdout.split(separator: "\n") where line.count > 80 {
        #expect(line.hasPrefix("  ") && line.split(separator: " ").count == 3, "only a path alone may be longer: \(line)")
    }
    let flat = human.stdout.split(whereSeparator: { $0 == " " || $0 == "\n" }).joined(separator: " ")
    #expect(flat.contains("! conflict ckpts/xlm-roberta-large/tokenizer.json (a directory is in the way of a file; not touched — move it away, then apply again)"),
            "the conflict says what to do: \(human.stdout)")
    #expect(human.stdout.contains("2 unchanged"))
    #expect(!human.stdout.contains("\u{1B}["), "no colour when not a terminal")
}

@Test func detailedExitcodeTellsChangesFromBlocked() throws {
    let m = try Machine(manifest: "version: 1\nmodels:\n  - t2v\n")
    try m.writeConfig("min_free_gb: 0\n")
    #expect(try m.wgpmRun(["plan", "--detailed-exitcode"]).status == 2, "downloads that fit: changes to review")
    // A reserve no disk has: apply would refuse to start the downloads.
    try m.writeConfig("min_free_gb: 100000000\n")
    let blocked = try m.wgpmRun(["plan", "--detailed-exitcode"], env: ["NO_COLOR": "1"])
    #expect(blocked.status == 3, "\(blocked.stdout)\(blocked.stderr)")
    #expect(try m.wgpmRun(["plan"]).status == 0, "without the flag a plan that was made exits 0")
}

@Test func planConvergesWhenEverythingIsInPlace() throws {
    let m = try Machine(manifest: "version: 1\nmodels:\n  - id: vace_14B\n    dtype: fp16\n")
    let (_, json) = try m.planJSON()
    for action in actions(json) {
        let url = action["url"] as! String
        let repoPath = url.replacingOccurrences(of: "https://huggingface.co/", with: "").replacingOccurrences(of: "/resolve/main/", with: "/")
        try m.place(action["path"] as! String, from: repoPath)
    }
    let (r, after) = try m.planJSON()
    #expect(r.status == 0, "no changes after everything is in place: \(r.stdout.prefix(400))")
    #expect(actions(after).isEmpty)
    #expect((after["unchanged"] as? [String])?.count == 38)
    #expect((after["stats"] as? [String: Any])?["files_hashed"] as? Int == 38)
    let (_, third) = try m.planJSON()
    #expect((third["stats"] as? [String: Any])?["files_hashed"] as? Int == 0, "an unchanged file is hashed once ever")
    #expect((third["stats"] as? [String: Any])?["hash_cache_hits"] as? Int == 38)
    let human = try m.wgpmRun(["plan"])
    #expect(human.stdout.contains("No changes. 38 files"))
}

@Test func badInputGivesClearErrorsAndExitCodes() throws {
    let m = try Machine(manifest: "version: 1\nmodels:\n  - t2vv\n  - i2v_22\n")
    let bad = try m.wgpmRun(["plan"])
    #expect(bad.status == 1)
    #expect(bad.stderr.contains("wgpm.yaml:3:5: unknown model id 't2vv'; did you mean t2v?"))
    #expect(bad.stderr.contains("wgpm.yaml:4:5: unknown model id 'i2v_22'; did you mean i2v_2_2?"))

    let usage = try m.wgpmRun(["plan", "--no-such-flag"])
    #expect(usage.status == 64)

    let missing = try m.wgpmRun(["plan", "-m", "nope.yaml"])
    #expect(missing.status == 1 && missing.stderr.contains("nope.yaml: cannot read the manifest"))

    try m.dir.write("wgpm.yaml", "version: 1\nfiles:\n  - url: https://huggingface.co/extra/none/resolve/main/x.safetensors\n    path: loras/wan/x.safetensors\n")
    let invalid = try m.wgpmRun(["plan"], env: ["HF_TOKEN": "hf_secret_value"])
    #expect(invalid.status == 1 && invalid.stderr.contains("rejected the token"), "\(invalid.stderr)")
    #expect(!invalid.stderr.contains("hf_secret_value"))
    try m.hub.setConfig(["tokens": ["hf_secret_value"]])
    let notFound = try m.wgpmRun(["plan"], env: ["HF_TOKEN": "hf_secret_value"])
    #expect(notFound.status == 1)
    #expect(notFound.stderr.contains("extra/none: repository not found"), "\(notFound.stderr)")
    #expect(!notFound.stderr.contains("hf_secret_value") && !notFound.stdout.contains("hf_secret_value"))
    let anonymous = try m.wgpmRun(["plan"])
    #expect(anonymous.status == 1 && anonymous.stderr.contains("HF_TOKEN"), "\(anonymous.stderr)")

    try m.dir.write("wgpm.yaml", "version: 1\nfiles:\n  - url: https://huggingface.co/DeepBeepMeep/Wan2.1/resolve/main/no-such-file.bin\n    path: ckpts/x.bin\n")
    let entry = try m.wgpmRun(["plan"])
    #expect(entry.status == 1 && entry.stderr.contains("file 'no-such-file.bin' does not exist"), "\(entry.stderr)")

    try m.dir.write("wgpm.yaml", "version: 1\nmodels: [t2v]\n")
    try m.dir.write("state/state.sqlite", Data(repeating: 0x42, count: 8192))
    let corrupt = try m.wgpmRun(["plan"])
    #expect(corrupt.status == 1 && corrupt.stderr.contains("state database"), "\(corrupt.stderr)")
    try FileManager.default.removeItem(atPath: m.dir.file("state/state.sqlite"))

    try m.dir.write("empty-wan/README", "no defaults here")
    try m.dir.write("config2.yaml", "wan2gp_directory: empty-wan\nstate_directory: state\n")
    let noDefaults = try m.wgpmRun(["plan", "--config", "config2.yaml"])
    #expect(noDefaults.status == 1 && noDefaults.stderr.contains("has no defaults/ folder"), "\(noDefaults.stderr)")

    try m.dir.write("broken-wan/defaults/t2v.json", "{\"model\": {\"architecture\": \"t2v\", ")
    try m.dir.write("config3.yaml", "wan2gp_directory: broken-wan\nstate_directory: state\n")
    let malformed = try m.wgpmRun(["plan", "--config", "config3.yaml"])
    #expect(malformed.status == 1 && malformed.stderr.contains("broken-wan/defaults/t2v.json: not a valid model definition"), "\(malformed.stderr)")

    let noConfig = try run(wgpm, ["plan"], environment: ["HOME": m.dir.file("nohome")], cwd: m.dir.file("ckpts").replacingOccurrences(of: "/ckpts", with: "/state"))
    #expect(noConfig.status == 1 && noConfig.stderr.contains("no config file found"), "\(noConfig.stderr)")
}

@Test func privateAndGatedReposNeedAToken() throws {
    let config: [String: Any] = ["tokens": ["hf_good"], "repos": ["extra/private": ["private": true, "granted": ["hf_good"]]]]
    let m = try Machine(manifest: "version: 1\nfiles:\n  - url: https://huggingface.co/extra/private/resolve/main/p.safetensors\n    path: loras/wan/p.safetensors\n",
                        hubConfig: config, extraURLs: ["https://huggingface.co/extra/private/resolve/main/p.safetensors"])
    let anon = try m.wgpmRun(["plan"])
    #expect(anon.status == 1 && anon.stderr.contains("set HF_TOKEN"), "\(anon.stderr)")
    try m.dir.write("hfhome/token", "hf_good\n")
    let withFile = try m.wgpmRun(["plan", "--detailed-exitcode"], env: ["HF_HOME": m.dir.file("hfhome")])
    #expect(withFile.status == 2, "\(withFile.stderr)")
    #expect(!withFile.stdout.contains("hf_good") && !withFile.stderr.contains("hf_good"))
}

@Test func modelsAndShowListTheCatalog() throws {
    let m = try Machine(manifest: "version: 1\nmodels: [t2v]\n")
    let models = try m.wgpmRun(["models", "i2v_2_2", "--json"])
    #expect(models.status == 0)
    let list = ((try JSONSerialization.jsonObject(with: Data(models.stdout.utf8)) as? [String: Any])?["models"] as? [[String: Any]]) ?? []
    let pair = try #require(list.first { $0["id"] as? String == "i2v_2_2" })
    #expect(pair["slots"] as? String == "high/low-noise pair")
    #expect(pair["files"] as? Int == 38)
    let show = try m.wgpmRun(["show", "t2v", "--json"])
    let files = ((try JSONSerialization.jsonObject(with: Data(show.stdout.utf8)) as? [String: Any])?["files"] as? [[String: Any]]) ?? []
    #expect(files.count == 37)
    #expect(files.allSatisfy { $0["size"] == nil }, "no sizes before a plan asked the Hub")
    _ = try m.wgpmRun(["plan"])
    let sized = try m.wgpmRun(["show", "t2v"])
    #expect(sized.stdout.contains("37 files,"), "\(sized.stdout)")
    let lines = sized.stdout.split(separator: "\n").map(String.init)
    #expect(sized.stdout.replacingOccurrences(of: "\n          ", with: " ").contains("settings: transformer_quantization int8, text_encoder_quantization int8, dtype bf16"),
            "wrapped to 80 columns under its start: \(sized.stdout)")
    let header = try #require(lines.firstIndex { $0.hasPrefix("  ROLE") }, "a table header: \(sized.stdout)")
    #expect(lines[header + 1].hasPrefix("  transformer "), "the transformer first: \(lines[header + 1])")
    #expect(!sized.stdout.contains("note: "), "int8 exists: no notice")
    let fp8 = try m.wgpmRun(["show", "t2v", "--transformer-quantization", "fp8"])
    #expect(fp8.stdout.replacingOccurrences(of: "\n      ", with: " ").contains("note: no fp8 variant of this model's transformer; Wan2GP takes ckpts/wan2.1_text2video_14B_quanto_mbf16_int8.safetensors"),
            "\(fp8.stdout)")
    let unknown = try m.wgpmRun(["show", "t2vv"])
    #expect(unknown.status == 1 && unknown.stderr.contains("did you mean t2v?"))
}

/// Every repo the Hub refuses is reported by one plan, a gated one with the page where its
/// terms are accepted; and metadata cached more than a day ago is pointed out.
@Test func planReportsEveryHubProblemAtOnceAndOldMetadata() throws {
    let m = try Machine(manifest: """
        version: 1
        files:
          - url: https://huggingface.co/org/gated/resolve/main/a.safetensors
            path: loras/a.safetensors
          - url: https://huggingface.co/org/private/resolve/main/b.safetensors
            path: loras/b.safetensors
          - url: https://huggingface.co/org/missing/resolve/main/c.safetensors
            path: loras/c.safetensors
        """, hubConfig: ["repos": ["org/gated": ["gated": "manual"], "org/private": ["private": true]]])
    try m.hub.addFile(repo: "org/gated", path: "a.safetensors", withSafetensorsStart(Data(repeating: 1, count: 100)))
    try m.hub.addFile(repo: "org/private", path: "b.safetensors", withSafetensorsStart(Data(repeating: 2, count: 100)))
    let r = try m.wgpmRun(["plan"])
    #expect(r.status == 1)
    #expect(r.stderr.contains("3 problems with what the manifest asks of the Hub:"), "\(r.stderr)")
    #expect(r.stderr.contains("org/gated is gated. Accept its terms on \(m.hub.hubURL)/org/gated"), "\(r.stderr)")
    #expect(r.stderr.contains("org/private") && r.stderr.contains("org/missing"), "\(r.stderr)")

    // Old metadata: the plan says so and how to refresh it.
    try m.dir.write("wgpm.yaml", "version: 1\nmodels:\n  - t2v\n")
    #expect(try m.wgpmRun(["plan"]).status == 0)
    let age = try run("/usr/bin/env", ["python3", "-c", "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.execute('UPDATE hub_revision SET fetched_at = fetched_at - 200000'); c.commit()",
                                       m.dir.file("state/state.sqlite")])
    #expect(age.status == 0, "\(age.stderr)")
    let old = try m.wgpmRun(["plan"])
    #expect(old.warnings.contains("is more than a day old (cached); 'wgpm plan --refresh' asks again"), "\(old.stderr)")
    #expect(!(try m.wgpmRun(["plan", "--refresh"])).stderr.contains("more than a day old"))
}

/// Run as a user who cannot write ckpts/ (setpriv to `nobody`): plan says apply would be
/// blocked, exits 3 with --detailed-exitcode, and names the folder (issue 12).
@Test func planAsAUserWhoCannotWriteCkptsIsBlocked() throws {
    guard getuid() == 0, FileManager.default.isExecutableFile(atPath: "/usr/bin/setpriv") else {
        Issue.record("needs root and setpriv (util-linux) to run wgpm as another user")
        return
    }
    let m = try Machine(manifest: "version: 1\nmodels: [t2v]\n")
    for path in [m.dir.path, m.dir.file("ckpts"), m.dir.file("state")] {
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }
    try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: m.dir.path)
    try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: m.dir.file("ckpts"))
    try FileManager.default.setAttributes([.posixPermissions: 0o777], ofItemAtPath: m.dir.file("state"))
    let r = try run("/usr/bin/setpriv", ["--reuid=65534", "--regid=65534", "--clear-groups", wgpm, "plan", "--detailed-exitcode"],
                    environment: ["HF_ENDPOINT": m.hub.hubURL, "HOME": m.dir.file("state"), "NO_COLOR": "1", "COLUMNS": "80"], cwd: m.dir.path)
    #expect(r.status == 3, "blocked, not changes to review: \(r.status) \(r.stderr)")
    let text = r.stdout.replacingOccurrences(of: #"\n +"#, with: " ", options: .regularExpression)
    #expect(text.contains("BLOCKED: \(m.dir.file("ckpts")) is not writable by this user (permission denied): apply would fail on the 37 files to write there"),
            "\(r.stdout)")
    // apply refuses before it queues anything.
    let apply = try run("/usr/bin/setpriv", ["--reuid=65534", "--regid=65534", "--clear-groups", wgpm, "apply", "--yes"],
                        environment: ["HF_ENDPOINT": m.hub.hubURL, "HOME": m.dir.file("state"), "NO_COLOR": "1"], cwd: m.dir.path)
    #expect(apply.status == 1 && apply.stdout.replacingOccurrences(of: #"\n +"#, with: " ", options: .regularExpression)
        .contains("BLOCKED: \(m.dir.file("ckpts")) is not writable"), "\(apply.stdout)")
    #expect(apply.stderr.contains("wgpm: error: apply refused: the BLOCKED line above says what to fix; nothing was queued."), "said once: \(apply.stderr)")
    #expect(!apply.stderr.contains("lock file"), "refused before taking the folder lock: \(apply.stderr)")
    // As the owner (root here) the same plan is merely changes to review.
    let owner = try m.wgpmRun(["plan", "--detailed-exitcode"])
    #expect(owner.status == 2 && !owner.stdout.contains("BLOCKED"), "\(owner.stdout)")
}
