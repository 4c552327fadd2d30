import Foundation
import Testing
import TestSupport

@Test func lockRoundTripAndLockedFailures() throws {
    let m = try Machine(manifest: "version: 1\nmodels:\n  - t2v\n")
    let made = try m.wgpmRun(["lock"])
    #expect(made.status == 0, "\(made.stderr)")
    #expect(made.stdout.contains("Wrote wgpm.lock: 37 files"))
    let first = try String(contentsOfFile: m.dir.file("wgpm.lock"), encoding: .utf8)
    let lock = try JSONSerialization.jsonObject(with: Data(first.utf8)) as? [String: Any] ?? [:]
    let files = lock["files"] as? [[String: Any]] ?? []
    #expect(lock["format_version"] as? Int == 1 && files.count == 37)
    #expect(files.map { $0["path"] as! String } == files.map { $0["path"] as! String }.sorted())
    #expect(files.allSatisfy { ($0["commit"] as? String)?.count == 40 && $0["size"] is Int && ($0["sha256"] != nil || $0["git_sha1"] != nil) })
    _ = try m.wgpmRun(["lock"])
    #expect(try String(contentsOfFile: m.dir.file("wgpm.lock"), encoding: .utf8) == first, "stable, diff-friendly")

    // With the lock, plan needs no Hub at all.
    let before = m.hub.requests().count
    let offline = try run(wgpm, ["plan", "--locked", "--detailed-exitcode"], environment: ["HF_ENDPOINT": "http://127.0.0.1:9", "HOME": m.dir.path], cwd: m.dir.path)
    #expect(offline.status == 2, "\(offline.stderr)")
    #expect(offline.stdout.contains("Plan: 37 to download"))
    #expect(m.hub.requests().count == before)

    // Downloads use the pinned commit.
    #expect(try m.wgpmRun(["apply", "--yes", "--locked"]).status == 0)
    let commit = files[0]["commit"] as! String
    #expect(m.hub.requests().filter { $0.path.contains("/resolve/") }.allSatisfy { $0.path.contains("/resolve/\(commit)/") })

    // --locked fails when manifest and lock disagree, naming the differences.
    try m.dir.write("wgpm.yaml", "version: 1\nmodels:\n  - t2v\n  - i2v_2_2\n")
    let added = try m.wgpmRun(["plan", "--locked"])
    #expect(added.status == 1)
    #expect(added.stderr.contains("wgpm.lock does not match the manifest"), "\(added.stderr)")
    #expect(added.stderr.contains("ckpts/wan2.2_image2video_14B_high_quanto_mbf16_int8.safetensors: wanted by the manifest, not in the lock"))
    let unlocked = try m.wgpmRun(["plan"])
    #expect(unlocked.status == 0 && unlocked.stderr.contains("wgpm.lock is out of date"), "\(unlocked.stderr)")
    try m.dir.write("wgpm.yaml", "version: 1\nmodels:\n  - i2v_2_2\n")
    try FileManager.default.removeItem(atPath: m.dir.file("wgpm.yaml"))
    try m.dir.write("wgpm.yaml", "version: 1\nmodels: []\nfiles:\n  - url: https://huggingface.co/DeepBeepMeep/Wan2.1/resolve/main/Wan2.1_VAE.safetensors\n    path: ckpts/Wan2.1_VAE.safetensors\n")
    let removed = try m.wgpmRun(["plan", "--locked"])
    #expect(removed.stderr.contains("in the lock, no longer wanted by the manifest"), "\(removed.stderr)")
    let updated = try m.wgpmRun(["lock", "--update"])
    #expect(updated.status == 0 && updated.stdout.contains("Wrote wgpm.lock: 1 file ("), "\(updated.stdout)")
    #expect(try m.wgpmRun(["plan", "--locked"]).status == 0)
}

/// The lock pins commits: after `main` moves on (a file re-uploaded with other bytes), apply
/// with the lock still fetches and verifies the pinned content, from the pinned commit; plans
/// keep following the lock until `lock --update` moves it to the new commit.
@Test func lockedApplyFetchesThePinnedCommitAfterMainMoved() throws {
    let m = try Machine(manifest: """
        version: 1
        files:
          - url: https://huggingface.co/extra/weights/resolve/main/model.safetensors
            path: ckpts/model.safetensors
        """)
    let old = withSafetensorsStart(Data(repeating: 7, count: 300_000))
    try m.hub.addFile(repo: "extra/weights", path: "model.safetensors", old)
    #expect(try m.wgpmRun(["lock"]).status == 0)
    let pinned = try m.hub.keepCurrentCommit(repo: "extra/weights")
    try m.hub.addFile(repo: "extra/weights", path: "model.safetensors", withSafetensorsStart(Data(repeating: 8, count: 310_000)))

    let applied = try m.wgpmRun(["apply", "--yes", "--locked"])
    #expect(applied.status == 0, "\(applied.stderr)")
    #expect(FileManager.default.contents(atPath: m.dir.file("ckpts/model.safetensors")) == old)
    let resolves = m.hub.requests().filter { $0.path.contains("/resolve/") }
    #expect(!resolves.isEmpty && resolves.allSatisfy { $0.path.contains("/resolve/\(pinned)/") })
    #expect(try m.wgpmRun(["plan", "--locked", "--detailed-exitcode"]).status == 0)

    #expect(try m.wgpmRun(["plan", "--detailed-exitcode", "--refresh"]).status == 0, "the lock still rules")

    #expect(try m.wgpmRun(["lock", "--update"]).status == 0)
    let moved = try m.wgpmRun(["plan", "--detailed-exitcode"])
    #expect(moved.status == 2, "main has other bytes now: \(moved.stdout)")
    #expect(moved.stdout.contains("replace") && moved.stdout.contains("ckpts/model.safetensors"), "\(moved.stdout)")
    #expect(!moved.stdout.contains(pinned.prefix(7)), "planned from the new commit")
}

@Test func ciPreviewWithoutConfigModelsOrNetwork() throws {
    let m = try Machine(manifest: "version: 1\nmodels:\n  - t2v\n")
    #expect(try m.wgpmRun(["lock"]).status == 0)
    #expect(try m.wgpmRun(["apply", "--yes"]).status == 0)
    let inventory = try m.wgpmRun(["inventory", "--json", "-o", "render-box.json"])
    #expect(inventory.status == 0, "\(inventory.stderr)")
    let recorded = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: m.dir.file("render-box.json")))) as? [String: Any] ?? [:]
    #expect((recorded["entries"] as? [[String: Any]])?.count == 37)

    // A CI checkout: manifest, lock and inventory only; no config, no ckpts, a dead Hub address.
    let ci = try TempDir("ci")
    defer { ci.remove() }
    for name in ["wgpm.yaml", "wgpm.lock", "render-box.json"] {
        try FileManager.default.copyItem(atPath: m.dir.file(name), toPath: ci.file(name))
    }
    let env = ["HF_ENDPOINT": "http://127.0.0.1:9", "HOME": ci.path]
    let same = try run(wgpm, ["plan", "--locked", "--inventory", "render-box.json", "--detailed-exitcode"], environment: env, cwd: ci.path)
    #expect(same.status == 0, "\(same.stdout) \(same.stderr)")
    let bare = try run(wgpm, ["plan", "--locked", "--detailed-exitcode"], environment: env, cwd: ci.path)
    #expect(bare.status == 2 && bare.stdout.contains("Plan: 37 to download"), "without the inventory: an empty machine")
    // A manifest change without a new lock is caught, even without the catalog.
    try ci.write("wgpm.yaml", "version: 1\nmodels:\n  - t2v\n  - flux\n")
    let changed = try run(wgpm, ["plan", "--locked", "--inventory", "render-box.json"], environment: env, cwd: ci.path)
    #expect(changed.status == 1 && changed.stderr.contains("no wgpm.lock made from this manifest"), "\(changed.stderr)")

    // The JSON plan validates against the documented schema.
    let json = try run(wgpm, ["plan", "--locked", "--json"], environment: env, cwd: m.dir.path)
    try m.dir.write("plan.json", json.stdout)
    let check = try run("/usr/bin/env", ["python3", "-c", """
        import json, sys, jsonschema
        jsonschema.validate(json.load(open(sys.argv[1])), json.load(open(sys.argv[2])))
        print("valid")
        """, m.dir.file("plan.json"), repositoryRoot + "/docs/plan.schema.json"])
    #expect(check.stdout.contains("valid"), "\(check.stderr)")
}

@Test func initAdoptsCompleteModels() throws {
    let m = try Machine(manifest: "version: 1\nmodels:\n  - t2v\n")
    #expect(try m.wgpmRun(["apply", "--yes"]).status == 0)
    try m.place("ckpts/wan2.2_image2video_14B_high_quanto_mbf16_int8.safetensors",
                from: "DeepBeepMeep/Wan2.2/wan2.2_image2video_14B_high_quanto_mbf16_int8.safetensors")
    let r = try m.wgpmRun(["init", "--from-ckpts", "-m", "adopted.yaml"])
    #expect(r.status == 0, "\(r.stderr)")
    #expect(r.stdout.contains("  complete  t2v  (37 files)"))
    #expect(r.stdout.contains("  partial   i2v_2_2  (37 of 38 files)"))
    let written = try String(contentsOfFile: m.dir.file("adopted.yaml"), encoding: .utf8)
    #expect(written.contains("models:\n  - t2v\n"))
    let plan = try m.wgpmRun(["plan", "-m", "adopted.yaml", "--detailed-exitcode"])
    #expect(plan.status == 0, "the adopted manifest needs no download")
    let again = try m.wgpmRun(["init", "-m", "adopted.yaml"])
    #expect(again.status == 1 && again.stderr.contains("exists; not overwritten"))
    let fresh = try m.wgpmRun(["init", "-m", "new.yaml"])
    #expect(fresh.status == 0)
    #expect(try m.wgpmRun(["plan", "-m", "new.yaml"]).status == 0, "the starter manifest is valid")
}

@Test func doctorReportsWhatToFix() throws {
    let m = try Machine(manifest: "version: 1\nmodels: [t2v]\n")
    try m.dir.write("ckpts", "a file where the folder belongs")
    try m.writeConfig("""
        sources:
          - directory: no-such-folder
          - invokeai: { db: missing/invokeai.db, models_dir: missing/models }
        """)
    let bad = try m.wgpmRun(["doctor"], env: ["HF_TOKEN": "hf_doctor_secret"])
    #expect(bad.status == 1)
    #expect(bad.stdout.contains("FAIL  ckpts_directory:") && bad.stdout.contains("is not a folder"))
    #expect(bad.stdout.contains("FAIL  directory:") && bad.stdout.contains("no-such-folder does not exist"))
    #expect(bad.stdout.contains("FAIL  invokeai:"))
    #expect(bad.stdout.contains("FAIL  hub:") && bad.stdout.contains("rejected the token"), "\(bad.stdout)")
    #expect(!bad.stdout.contains("hf_doctor_secret") && !bad.stderr.contains("hf_doctor_secret"))
    try FileManager.default.removeItem(atPath: m.dir.file("ckpts"))
    try m.writeConfig()
    let good = try m.wgpmRun(["doctor"])
    #expect(good.status == 0, "\(good.stdout)")
    // ckpts/ does not exist yet: a warning, and the last line does not hide it.
    #expect(good.stdout.contains("ok    hub:") && good.stdout.contains("Nothing stops wgpm;") && good.stdout.contains(" above."),
            "\(good.stdout)")
    #expect(!good.stdout.contains("No problems found."))
}

@Test func doctorRunsEveryCheckWhenTheConfigIsBrokenAndFailsWhatWouldBlock() throws {
    let m = try Machine(manifest: "version: 1\nmodels: []\n")
    try m.dir.write("config.yaml", "wan2gp_directory: /nonexistent/wan2gp\nckpts_directory: [\n")
    let broken = try m.wgpmRun(["doctor"])
    #expect(broken.status == 1)
    let lines = broken.stdout.split(separator: "\n").map(String.init)
    #expect(lines.first?.hasPrefix("  FAIL  config: ") == true, "\(broken.stdout)")
    #expect(lines.contains { $0.hasPrefix("  ok    hub: ") }, "the Hub is still checked: \(broken.stdout)")
    #expect(lines.contains("  skip  wan2gp_directory: not checked: the config above could not be read"), "\(broken.stdout)")
    #expect(lines.last == "1 check failed. Fix what the FAIL lines say, then run 'wgpm doctor' again.", "\(broken.stdout)")
    #expect(!broken.stdout.contains("Error:") && broken.stderr.isEmpty, "one report, no second error: \(broken.stderr)")
    // Bad lines in a readable config: the others are used, and every check runs with them.
    try m.dir.write("config.yaml", "wan2gp_directory: \(m.wan2gp)\nckpts_directory: ckpts\nstate_directory: state\nlink_mode: sideways\nparalel_downloads: 3\n")
    let typo = try m.wgpmRun(["doctor"])
    #expect(typo.status == 1)
    #expect(typo.stdout.contains("  FAIL  config: ") && typo.stdout.contains("2 problems") && typo.stdout.contains("did you mean parallel_downloads?"),
            "\(typo.stdout)")
    #expect(typo.stdout.contains("  ok    wan2gp_directory: \(m.wan2gp)") && !typo.stdout.contains("  skip  "), "\(typo.stdout)")
    #expect(typo.stdout.contains("1 check failed"), "the config is one check, however many lines it has: \(typo.stdout)")
    // A reserve the disk cannot meet blocks every download: a failure, never "No problems found".
    try m.writeConfig("min_free_gb: 100000000\n")
    let full = try m.wgpmRun(["doctor"])
    #expect(full.status == 1)
    #expect(full.stdout.contains("FAIL  free space:") && full.stdout.contains("apply will refuse to download"), "\(full.stdout)")
    #expect(!full.stdout.contains("No problems found") && !full.stdout.contains("Nothing stops wgpm"))
}

/// `lock --update MODEL` moves every pin that model's files have, shared files included, and
/// says which other models they serve; a model the manifest does not list is an error.
@Test func lockUpdateOfOneModelMovesItsSharedFilesAndSaysSo() throws {
    let m = try Machine(manifest: "version: 1\nmodels:\n  - t2v\n  - vace_14B\n")
    #expect(try m.wgpmRun(["lock"]).status == 0)
    struct Lock: Decodable { struct Entry: Decodable { var path: String; var sha256: String?; var commit: String? }; var files: [Entry] }
    func pins() throws -> [String: String] {
        let lock = try JSONDecoder().decode(Lock.self, from: Data(contentsOf: URL(fileURLWithPath: m.dir.file("wgpm.lock"))))
        return Dictionary(uniqueKeysWithValues: lock.files.map { ($0.path, ($0.sha256 ?? "") + "@" + ($0.commit ?? "")) })
    }
    let before = try pins()
    // The shared VAE gets other bytes upstream.
    try m.hub.addFile(repo: "DeepBeepMeep/Wan2.1", path: "Wan2.1_VAE.safetensors", withSafetensorsStart(Data(repeating: 3, count: 5000)))
    let notListed = try m.wgpmRun(["lock", "--update", "i2v_2_2"])
    #expect(notListed.status == 1 && notListed.stderr.contains("i2v_2_2 is not in wgpm.yaml"), "\(notListed.stderr)")
    #expect(try pins() == before, "a refused update changes nothing")
    let updated = try m.wgpmRun(["lock", "--update", "t2v"])
    #expect(updated.status == 0, "\(updated.stderr)")
    #expect(updated.stdout.contains("also wanted by vace_14B: the new pins hold for them too."), "\(updated.stdout)")
    let after = try pins()
    #expect(after["ckpts/Wan2.1_VAE.safetensors"]?.split(separator: "@").first != before["ckpts/Wan2.1_VAE.safetensors"]?.split(separator: "@").first,
            "the shared VAE was resolved again")
    let vaceOnly = try #require(before.keys.first { $0.contains("Vace") || $0.contains("vace") }, "\(before.keys.sorted())")
    #expect(after[vaceOnly] == before[vaceOnly], "a file only vace_14B wants keeps its pin")
}

/// Help names what a value is (`-o <file>`, never `-o <o>`), lists a value set once, and the
/// shell completion offers files and the catalog's model ids.
@Test func helpAndCompletionSpeakPlainly() throws {
    let m = try Machine(manifest: "version: 1\nmodels: []\n")
    let plan = try m.wgpmRun(["plan", "--help"])
    #expect(plan.stdout.contains("-o <file>") && plan.stdout.contains("-m, --manifest <file>") && plan.stdout.contains("--inventory <file>"),
            "\(plan.stdout)")
    #expect(!plan.stdout.contains("<o>") && !plan.stdout.contains("<manifest>"), "\(plan.stdout)")
    let show = try m.wgpmRun(["show", "--help"])
    let flat = show.stdout.split(whereSeparator: { $0 == " " || $0 == "\n" }).joined(separator: " ")
    #expect(!flat.contains("int8 | fp8"), "the values are listed once, by the parser: \(show.stdout)")
    #expect(flat.components(separatedBy: "int8, fp8, bf16").count == 2, "\(show.stdout)")
    let bash = try m.wgpmRun(["--generate-completion-script", "bash"])
    #expect(bash.status == 0 && bash.stdout.contains("---completion show -- positional@0"), "model ids come from wgpm itself")
    #expect(bash.stdout.contains("'!*.@(yaml|yml)'"), "manifests and configs complete as YAML files")
    // What the shell asks when `wgpm show t2<TAB>` is typed.
    let ids = try m.wgpmRun(["---completion", "show", "--", "positional@0", "2", "2", "wgpm", "show", "t2"])
    #expect(ids.stdout.split(separator: "\n").contains("t2v"), "\(ids.stdout) \(ids.stderr)")
}
