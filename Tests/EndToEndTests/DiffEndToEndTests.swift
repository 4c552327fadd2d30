import Foundation
import Testing
import TestSupport

// Golden files live in fixtures/golden/ and are compared byte for byte. After a
// deliberate change to the output, rewrite them with
//   WGPM_UPDATE_GOLDEN=1 swift test --filter DiffEndToEndTests
// and review the change in `git diff` as a reviewer would read the comment.
let goldenDirectory = repositoryRoot + "/fixtures/golden"

func expectGolden(_ text: String, _ name: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
    let path = goldenDirectory + "/" + name
    if ProcessInfo.processInfo.environment["WGPM_UPDATE_GOLDEN"] == "1" {
        try FileManager.default.createDirectory(atPath: goldenDirectory, withIntermediateDirectories: true)
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return
    }
    let expected = try? String(contentsOfFile: path, encoding: .utf8)
    #expect(expected != nil, "no golden file \(path); run with WGPM_UPDATE_GOLDEN=1 to write it", sourceLocation: sourceLocation)
    #expect(text == expected, "output differs from \(path); if the change is deliberate, run with WGPM_UPDATE_GOLDEN=1",
            sourceLocation: sourceLocation)
}

/// The HTML GitHub's Markdown dialect makes of `markdown`, by cmark-gfm (the reference GFM
/// parser; scripts/setup.sh installs it), raw HTML kept as GitHub keeps `<details>`. A missing cmark-gfm fails the test: without it,
/// nothing proves the tables are tables.
func gfmHTML(_ markdown: String) throws -> String {
    let path = ["/usr/bin/cmark-gfm", "/usr/local/bin/cmark-gfm"].first { FileManager.default.isExecutableFile(atPath: $0) }
    guard let path else {
        Issue.record("cmark-gfm is not installed; run scripts/setup.sh (or apt-get install -y cmark-gfm)")
        return ""
    }
    let dir = try TempDir("gfm")
    defer { dir.remove() }
    let input = try dir.write("in.md", markdown)
    let r = try run(path, ["-e", "table", "--unsafe", input])
    #expect(r.status == 0, "cmark-gfm failed: \(r.stderr)")
    return r.stdout
}

/// The header cells of each `<table>` in cmark-gfm's HTML, in order.
func tableHeaders(_ html: String) -> [[String]] {
    html.components(separatedBy: "<table>").dropFirst().map { table in
        let head = table.components(separatedBy: "</thead>").first ?? ""
        return head.components(separatedBy: "<th").dropFirst().compactMap { cell -> String? in
            guard cell.first == ">" || cell.first == " " else { return nil }
            let inner = cell.drop { $0 != ">" }.dropFirst()
            return String(inner.prefix { $0 != "<" })
        }
    }
}

func jsonObject(_ text: String) -> [String: Any] {
    (try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [String: Any] ?? [:]
}

/// A recorded render machine with a fixed amount of free space, so the output is the same on
/// every machine that runs the tests.
func writeInventory(_ m: Machine, freeBytes: Int64) throws {
    try m.dir.write("render-box.json", """
        {"format_version": 1, "entries": [], "filesystems": {
          "ckpts": {"id": "fs-data", "mount_point": "/data", "free_bytes": \(freeBytes)},
          "loras": {"id": "fs-data", "mount_point": "/data", "free_bytes": \(freeBytes)}}}
        """)
}

/// Two real locks of the real catalog from the fake Hub: BASE wants t2v (int8) and i2v_2_2;
/// HEAD drops i2v_2_2, switches t2v to bf16, adds vace_14B (which shares the VAE, the text
/// encoder and t2v's int8 transformer), and the Hub's VAE changed in between, so
/// `lock --update` moved its pin (and its repo's commit).
func twoLocks() throws -> Machine {
    let m = try Machine(manifest: "version: 1\nmodels:\n  - t2v\n  - i2v_2_2\n")
    let lock = try m.wgpmRun(["lock"])
    #expect(lock.status == 0, "\(lock.stderr)")
    try FileManager.default.copyItem(atPath: m.dir.file("wgpm.lock"), toPath: m.dir.file("base.lock"))
    try m.dir.write("wgpm.yaml", "version: 1\nmodels:\n  - id: t2v\n    transformer_quantization: bf16\n  - vace_14B\n")
    try m.hub.addFile(repo: "DeepBeepMeep/Wan2.1", path: "Wan2.1_VAE.safetensors", Data(repeating: 0x5A, count: 3000))
    let update = try m.wgpmRun(["lock", "--update"])
    #expect(update.status == 0, "\(update.stderr)")
    return m
}

@Test func diffOfTwoRealLocksNamesModelsSharedFilesSettingsAndPins() throws {
    let m = try twoLocks()
    let requests = m.hub.requests().count
    // Locks alone: no config, no catalog, no Hub (an endpoint nobody listens on).
    let cwd = m.dir.file("ci")
    try FileManager.default.createDirectory(atPath: cwd, withIntermediateDirectories: true)
    let offline = ["HOME": cwd, "HF_ENDPOINT": "http://127.0.0.1:9", "NO_COLOR": "1"]
    let r = try run(wgpm, ["diff", "../base.lock", "../wgpm.lock", "--json"], environment: offline, cwd: cwd)
    #expect(r.status == 0, "\(r.stderr)")
    #expect(r.stderr.isEmpty, "locks that record their models give no warning: \(r.stderr)")
    #expect(m.hub.requests().count == requests, "two locks need no network")
    let json = jsonObject(r.stdout)
    #expect(json["format_version"] as? Int == 1)
    #expect(json["changes"] as? Bool == true)
    let models = json["models"] as? [[String: Any]] ?? []
    #expect(models.compactMap { $0["id"] as? String } == ["i2v_2_2", "t2v", "vace_14B"])
    let i2v = try #require(models.first { $0["id"] as? String == "i2v_2_2" })
    #expect(i2v["change"] as? String == "removed")
    let t2v = try #require(models.first { $0["id"] as? String == "t2v" })
    #expect(t2v["change"] as? String == "changed")
    let settings = t2v["settings"] as? [[String: String]] ?? []
    #expect(settings == [["name": "transformer_quantization", "base": "int8", "head": "bf16"]])
    let dropped = t2v["dropped_files"] as? [[String: Any]] ?? []
    let int8 = try #require(dropped.first { $0["path"] as? String == "ckpts/wan2.1_text2video_14B_quanto_mbf16_int8.safetensors" })
    #expect(int8["shared_with"] as? [String] == ["vace_14B"], "vace_14B still wants t2v's int8 transformer")
    let vace = try #require(models.first { $0["id"] as? String == "vace_14B" })
    #expect(vace["change"] as? String == "added")
    let reused = vace["reused_files"] as? [[String: Any]] ?? []
    #expect(reused.contains { $0["path"] as? String == "ckpts/umt5-xxl/models_t5_umt5-xxl-enc-quanto_int8.safetensors" },
            "the text encoder t2v already wants")
    #expect(reused.allSatisfy { ($0["shared_with"] as? [String])?.contains("t2v") == true })

    // A file both models newly want is listed under each and counted once in the summary.
    let summary = try #require(json["summary"] as? [String: Any])
    var unique: [String: Int] = [:]
    for model in models {
        for f in model["added_files"] as? [[String: Any]] ?? [] { unique[f["path"] as! String] = f["size"] as? Int ?? 0 }
    }
    #expect(summary["files_added"] as? Int == unique.count)
    #expect(summary["added_bytes"] as? Int == unique.values.reduce(0, +))
    #expect(summary["models_added"] as? Int == 1 && summary["models_changed"] as? Int == 1 && summary["models_removed"] as? Int == 1)

    // The VAE's content moved: downloaded again. The rest of its repo moved commit only.
    let pins = json["moved_pins"] as? [[String: Any]] ?? []
    let vae = try #require(pins.first { $0["path"] as? String == "ckpts/Wan2.1_VAE.safetensors" })
    #expect(vae["content_changed"] as? Bool == true && vae["size"] as? Int == 3000)
    #expect(vae["base_commit"] as? String != vae["head_commit"] as? String)
    #expect(pins.contains { $0["content_changed"] as? Bool == false }, "same bytes, new commit")
    #expect(summary["redownload_bytes"] as? Int == 3000 && summary["content_changed"] as? Int == 1)
    let removed = (json["removed_files"] as? [[String: Any]] ?? []).compactMap { $0["path"] as? String }
    #expect(removed == ["ckpts/wan2.2_image2video_14B_high_quanto_mbf16_int8.safetensors",
                        "ckpts/wan2.2_image2video_14B_low_quanto_mbf16_int8.safetensors"], "\(removed)")
    #expect(summary["freed_bytes"] as? Int == (json["removed_files"] as? [[String: Any]] ?? []).reduce(0) { $0 + ($1["size"] as? Int ?? 0) })

    // The text form: one line per model and its notes, within 80 columns but for paths.
    let text = try run(wgpm, ["diff", "../base.lock", "../wgpm.lock"], environment: offline, cwd: cwd)
    #expect(text.status == 0)
    #expect(text.stdout.contains("  ~ t2v\n      transformer_quantization: int8 -> bf16\n"), "\(text.stdout)")
    #expect(text.stdout.contains("  + vace_14B\n") && text.stdout.contains("  - i2v_2_2\n"))
    for line in text.stdout.split(separator: "\n") where !line.contains("ckpts/") { #expect(line.count <= 80, "\(line)") }

    // Markdown: the golden file, and cmark-gfm reads its tables as tables.
    let md = try run(wgpm, ["diff", "../base.lock", "../wgpm.lock", "--format", "markdown"], environment: offline, cwd: cwd)
    #expect(md.status == 0)
    try expectGolden(md.stdout, "diff-locks.md")
    #expect(!md.stdout.contains("\u{1B}"), "no colour codes")
    let html = try gfmHTML(md.stdout)
    let headers = tableHeaders(html)
    #expect(headers.count == 2, "the model table and the per-file table: \(html.prefix(300))")
    #expect(headers.first == ["Model", "Change", "Adds", "Unwanted", "Notes"])
    #expect(headers.last == ["Change", "Path", "Size", "Wanted by / pin"])
    #expect(html.contains("<details><summary>"))
    #expect(html.contains("<td><code>vace_14B</code></td>"))
    let again = try run(wgpm, ["diff", "../base.lock", "../wgpm.lock", "--format", "markdown"], environment: offline, cwd: cwd)
    #expect(again.stdout == md.stdout, "stable output")
}

@Test func diffAndPlanAgainstARecordedMachineSayWhetherItFits() throws {
    let m = try twoLocks()
    // 5 GB free and min_free_gb 5: nothing fits, so apply would refuse there.
    try writeInventory(m, freeBytes: 5_000_000_000)
    let diff = try m.wgpmRun(["diff", "base.lock", "wgpm.lock", "--format", "markdown", "--inventory", "render-box.json"])
    #expect(diff.status == 0, "a diff is a report: \(diff.stderr)")
    #expect(diff.stdout.contains("⛔ **Blocked on `render-box.json`**"), "\(diff.stdout.prefix(600))")
    let diffJSON = jsonObject(try m.wgpmRun(["diff", "base.lock", "wgpm.lock", "--json", "--inventory", "render-box.json"]).stdout)
    #expect((diffJSON["space"] as? [String: Any])?["blocked"] as? Bool == true)
    // HEAD as a manifest (with its lock next to it) says the same as HEAD's lock.
    let fromManifest = try m.wgpmRun(["diff", "base.lock", "wgpm.yaml", "--json", "--inventory", "render-box.json"])
    #expect(fromManifest.status == 0, "\(fromManifest.stderr)")
    var a = jsonObject(fromManifest.stdout), b = diffJSON
    for key in ["head", "base"] { a[key] = nil; b[key] = nil }
    #expect(NSDictionary(dictionary: a) == NSDictionary(dictionary: b))
    #expect((jsonObject(fromManifest.stdout)["head"] as? [String: String])?["kind"] == "manifest")

    let plan = try m.wgpmRun(["plan", "--locked", "--format", "markdown", "--inventory", "render-box.json"])
    #expect(plan.stderr.isEmpty, "\(plan.stderr)")
    try expectGolden(plan.stdout, "plan-blocked.md")
    let headers = tableHeaders(try gfmHTML(plan.stdout))
    #expect(headers.map(\.first) == ["Model", "Filesystem", "Action"], "\(headers)")
    #expect(plan.stdout.contains("⛔ **Blocked:** not enough space on `/data`"))

    try writeInventory(m, freeBytes: 900_000_000_000)
    let fits = try m.wgpmRun(["plan", "--locked", "--format", "markdown", "--inventory", "render-box.json"])
    #expect(fits.stdout.contains("✅ Not blocked."))
    let rows = fits.stdout.split(separator: "\n").filter { $0.hasPrefix("| `") || $0.hasPrefix("| _") }
    #expect(rows.contains { $0.hasPrefix("| _shared by several_ |") }, "files both models want have their own row")
}

@Test func diffRefusesInputsThatAreNeitherLockNorManifest() throws {
    let dir = try TempDir("diff-bad")
    defer { dir.remove() }
    let env = ["HOME": dir.path, "HF_ENDPOINT": "http://127.0.0.1:9"]
    try dir.write("good.lock", "{\"format_version\": 1, \"manifest_sha256\": \"\", \"files\": []}")
    try dir.write("v9.lock", "{\"format_version\": 9, \"manifest_sha256\": \"\", \"files\": []}")
    try dir.write("broken.lock", "{\"format_version\": 1, \"files\": [")
    try dir.write("evil.lock", "{\"format_version\": 1, \"manifest_sha256\": \"\", \"files\": [{\"path\": \"ckpts/../../etc/passwd\", \"url\": \"https://h/x\"}]}")
    try dir.write("binary.bin", Data([0xFF, 0xFE, 0x00, 0x01]))
    try dir.write("manifest.yaml", "version: 1\nmodels: [t2v]\n")
    let cases: [(String, String)] = [
        ("nope.lock", "nope.lock does not exist"),
        ("v9.lock", "v9.lock: its format_version is 9"),
        ("broken.lock", "broken.lock: it is broken JSON"),
        ("evil.lock", "evil.lock: 1 entry is not acceptable"),
        ("binary.bin", "binary.bin"),
        ("manifest.yaml", "manifest.yaml is not a lock, so it is read as a manifest, and a manifest needs the catalog"),
    ]
    for (file, message) in cases {
        let r = try run(wgpm, ["diff", "good.lock", file], environment: env, cwd: dir.path)
        #expect(r.status == 1, "\(file): \(r.status) \(r.stderr)")
        #expect(r.stderr.contains(message), "\(file): \(r.stderr)")
        #expect(r.stdout.isEmpty)
    }
    let usage = try run(wgpm, ["diff", "good.lock"], environment: env, cwd: dir.path)
    #expect(usage.status == 64)
    let same = try run(wgpm, ["diff", "good.lock", "good.lock"], environment: env, cwd: dir.path)
    #expect(same.status == 0 && same.stdout.contains("No changes"), "\(same.stdout)")
}

@Test func markdownOfAHugeDiffStaysWithinGitHubsLimit() throws {
    let dir = try TempDir("diff-huge")
    defer { dir.remove() }
    func lock(_ range: Range<Int>, models: Int) -> String {
        let files = range.map { i in
            "{\"path\": \"ckpts/many/file-\(i)-\(String(repeating: "x", count: 40)).safetensors\", \"url\": \"https://huggingface.co/o/r/resolve/main/f\(i)\", \"size\": \(1_000_000 + i), \"wanted_by\": [\"model_\(i % models)\"]}"
        }
        return "{\"format_version\": 1, \"manifest_sha256\": \"\", \"files\": [\(files.joined(separator: ","))]}"
    }
    try dir.write("base.lock", lock(0..<1500, models: 700))
    try dir.write("head.lock", lock(1500..<4000, models: 900))
    let r = try run(wgpm, ["diff", "base.lock", "head.lock", "--format", "markdown"], environment: ["HOME": dir.path], cwd: dir.path)
    #expect(r.status == 0, "\(r.stderr)")
    #expect(r.stdout.utf8.count <= 65_536, "\(r.stdout.utf8.count) bytes")
    #expect(r.stdout.utf8.count > 40_000, "uses the room it has")
    #expect(r.stdout.contains("more files, left out to stay within GitHub's 65536-character limit"))
    #expect(r.stdout.hasPrefix("### wgpm diff: `base.lock` → `head.lock`\n\n**+"), "the summary line comes first")
    #expect(r.stdout.hasSuffix("</details>\n"), "the collapsed block is closed")
    #expect(tableHeaders(try gfmHTML(r.stdout)).count >= 1)
}
