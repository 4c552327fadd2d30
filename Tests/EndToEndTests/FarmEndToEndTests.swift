import Foundation
import Testing
import TestSupport

/// The repo files of the fake Hub that `pick` selects, copied flat into `folder` under names
/// of their own (a NAS share does not keep the Hub's layout).
func copyHubFiles(_ m: Machine, into folder: String, _ pick: (String) -> Bool) throws -> Int {
    var copied = 0
    let root = m.hub.root
    for case let rel as String in FileManager.default.enumerator(atPath: root)! where !rel.hasPrefix("_") && pick(rel) {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: root + "/" + rel, isDirectory: &isDir), !isDir.boolValue else { continue }
        try m.dir.write(folder + "/" + rel.replacingOccurrences(of: "/", with: "__"), try Data(contentsOf: URL(fileURLWithPath: root + "/" + rel)))
        copied += 1
    }
    return copied
}

/// With a lock and the Hub down, apply places what a folder source holds at once (links run
/// before downloads), gives up on the Hub after a few connection failures in a row, and
/// names it once — instead of every download retrying with backoff for minutes.
@Test func withTheHubDownLinksAreMadeAndTheHostIsReportedOnce() throws {
    let m = try Machine(manifest: "version: 1\nmodels: [t2v]\n")
    #expect(try m.wgpmRun(["lock"]).status == 0)
    let big = try copyHubFiles(m, into: "nas") { $0.hasSuffix(".safetensors") }
    #expect(big >= 2)
    try m.writeConfig("link_mode: symlink\nparallel_downloads: 2\nsources:\n  - directory: nas\n")
    m.hub.stop()  // the Hub's port is closed now
    let (planned, json) = try m.planJSON()
    #expect(planned.status == 0 || planned.status == 2, "a lock plans without the Hub: \(planned.stderr)")
    let toLink = ((json["actions"] as? [[String: Any]]) ?? []).filter { $0["action"] as? String == "link" }.count
    #expect(toLink >= 2)
    let started = Date()
    let r = try m.wgpmRun(["apply", "--yes"], env: ["NO_COLOR": "1"])
    let seconds = Date().timeIntervalSince(started)
    #expect(r.status == 1, "the small files could not be fetched: \(r.stderr)")
    #expect(seconds < 60, "gave up on the Hub quickly (\(seconds) s)")
    let links = try FileManager.default.subpathsOfDirectory(atPath: m.dir.file("ckpts")).filter {
        (try? FileManager.default.destinationOfSymbolicLink(atPath: m.dir.file("ckpts/" + $0))) != nil
    }
    #expect(links.count == toLink, "every file the folder holds was linked: \(links)")
    let lines = r.stderr.split(separator: "\n")
    let named = lines.filter { $0.contains("stops trying") }
    #expect(named.count == 1, "once, in the summary: \(r.stderr)")
    let failed = lines.filter { $0.hasPrefix("  failed  ") }
    #expect(!failed.isEmpty && failed.allSatisfy { !$0.contains(":") }, "a failed job's line names the file only: \(r.stderr)")
    #expect(!r.stderr.contains("hf_"), "no token")
}

/// The file host down while the Hub answers: the breaker counts the file host's connections
/// too, single-stream and segmented, so the downloads stop after a few refused connections
/// with one reason instead of each retrying six times with backoff.
@Test func withTheFileHostDownDownloadsStopWithOneReason() throws {
    let m = try Machine(manifest: "version: 1\nmodels: [t2v]\n")
    // A large file, so the segmented path meets the closed port too.
    try m.writeConfig("parallel_downloads: 3\nconnections_per_file: 4\n")
    #expect(try m.wgpmRun(["lock"]).status == 0)
    // Every file the Hub redirects lands on a port nobody listens on.
    try m.hub.setConfig(["faults": [["listener": "hub", "path_contains": "/resolve/", "type": "redirect",
                                     "location": "http://127.0.0.1:9/lfs/gone", "count": 10_000]]])
    let started = Date()
    let r = try m.wgpmRun(["apply", "--yes"], env: ["NO_COLOR": "1"])
    let seconds = Date().timeIntervalSince(started)
    #expect(r.status == 1, "\(r.stderr)")
    #expect(seconds < 30, "gave up on the file host quickly (\(seconds) s)")
    let lines = r.stderr.split(separator: "\n").map(String.init)
    let reasons = lines.filter { $0.hasPrefix("wgpm: error:") }
    #expect(reasons.count == 1 && reasons[0].contains("127.0.0.1:9"), "one reason, naming the file host: \(r.stderr)")
    #expect(lines.contains("  (the reason for 37 files:)"), "\(r.stderr)")
    let retries = lines.filter { $0.contains("retrying in") }.count
    #expect(retries <= 6, "a few tries in all, not six per file: \(retries)")
}

/// A NAS covers everything: with a lock, a plain folder holding every file (under names of its
/// own) fills the machine with no Hub at all — the small files matched by git blob sha1, the
/// large ones by sha256 — and a second plan hashes nothing (the results are cached).
@Test func aFolderFillsAMachineWithNoHubGivenALock() throws {
    let m = try Machine(manifest: "version: 1\nmodels: [t2v]\n")
    #expect(try m.wgpmRun(["lock"]).status == 0)
    _ = try copyHubFiles(m, into: "nas") { _ in true }
    try m.writeConfig("link_mode: hardlink\nsources:\n  - directory: nas\n")
    m.hub.stop()
    let (planned, json) = try m.planJSON()
    #expect(planned.status == 2, "\(planned.stderr)")
    let actions = (json["actions"] as? [[String: Any]]) ?? []
    #expect(!actions.isEmpty && actions.allSatisfy { $0["action"] as? String == "link" }, "\(actions.filter { $0["action"] as? String != "link" })")
    let bases = Set(actions.compactMap { ($0["fetch"] as? [String: Any])?["basis"] as? String })
    #expect(bases == ["sha256", "git-sha1"], "small files by git blob sha1, not by name: \(bases)")
    let applied = try m.wgpmRun(["apply", "--yes"])
    #expect(applied.status == 0, "\(applied.stderr)")
    let (again, json2) = try m.planJSON()
    #expect(again.status == 0, "nothing left to do: \(again.stdout)")
    #expect((json2["stats"] as? [String: Any])?["source_files_hashed"] as? Int == 0, "hashes are cached: \(json2["stats"] ?? "")")
}

/// Fleet view: two recorded machines (one empty, one holding part of the set) planned at once;
/// one summary each, and what a shared mirror fetches counts each file once.
@Test func planOverSeveralInventoriesSummarisesEachMachineAndTheMirrorTotal() throws {
    let m = try Machine(manifest: "version: 1\nmodels: [t2v]\n")
    #expect(try m.wgpmRun(["lock"]).status == 0)
    try FileManager.default.createDirectory(atPath: m.dir.file("fleet"), withIntermediateDirectories: true)
    #expect(try m.wgpmRun(["inventory", "--json", "-o", "fleet/empty.json"]).status == 0)
    #expect(try m.wgpmRun(["apply", "--yes"]).status == 0)
    try FileManager.default.removeItem(atPath: m.dir.file("ckpts/Wan2.1_VAE.safetensors"))
    #expect(try m.wgpmRun(["inventory", "--json", "-o", "fleet/most.json"]).status == 0)
    // The empty machine's ckpts/ sits on a small disk of its own.
    var empty = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: m.dir.file("fleet/empty.json")))) as? [String: Any])
    var filesystems = empty["filesystems"] as? [String: Any] ?? [:]
    filesystems["ckpts"] = ["id": "fs-small", "mount_point": "/small", "free_bytes": 1000]
    empty["filesystems"] = filesystems
    try JSONSerialization.data(withJSONObject: empty).write(to: URL(fileURLWithPath: m.dir.file("fleet/empty.json")))
    let r = try m.wgpmRun(["plan", "--inventory", "fleet", "--json"])
    #expect(r.status == 0, "\(r.stderr)")
    try m.dir.write("fleet.json", r.stdout)
    let check = try run("/usr/bin/env", ["python3", "-c", """
        import json, sys, jsonschema
        jsonschema.validate(json.load(open(sys.argv[1])), json.load(open(sys.argv[2])))
        print("valid")
        """, m.dir.file("fleet.json"), repositoryRoot + "/docs/fleet.schema.json"])
    #expect(check.stdout.contains("valid"), "the fleet report follows docs/fleet.schema.json: \(check.stderr)")
    let json = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
    #expect(json["format_version"] as? Int == 1)
    let machines = (json["machines"] as? [[String: Any]]) ?? []
    #expect(machines.map { $0["name"] as? String } == ["empty.json", "most.json"])
    #expect(machines.last?["downloads"] as? Int == 1)
    let all = machines.first?["download_bytes"] as? Int ?? 0
    let vae = machines.last?["download_bytes"] as? Int ?? -1
    #expect(json["upstream_bytes"] as? Int == all, "the VAE both need crosses once")
    #expect(json["total_download_bytes"] as? Int == all + vae)
    let small = (machines.first?["filesystems"] as? [[String: Any]])?.first
    #expect(small?["mount_point"] as? String == "/small" && small?["free_bytes"] as? Int == 1000 && small?["fits"] as? Bool == false,
            "free space per filesystem: \(machines.first ?? [:])")
    #expect(machines.first?["fits"] as? Bool == false && machines.last?["fits"] as? Bool == true)
    let text = try m.wgpmRun(["plan", "--inventory", m.dir.file("fleet/empty.json"), "--inventory", m.dir.file("fleet/most.json")])
    #expect(text.status == 0 && text.stdout.contains("Through a shared mirror"), "\(text.stdout)")
    #expect(text.stdout.split(separator: "\n").allSatisfy { $0.count <= 80 }, "\(text.stdout)")
    #expect(text.stdout.contains("    /small: ") && text.stdout.contains("to download, 1.0 KB free, keeps 5.0 GB — NOT ENOUGH SPACE"), "\(text.stdout)")
    let md = try m.wgpmRun(["plan", "--inventory", "fleet", "--format", "markdown"])
    #expect(md.stdout.contains("| most.json | 1 |"), "\(md.stdout)")
    #expect(md.stdout.contains("`/small` 1.0 KB (**short**)"), "\(md.stdout)")
}
