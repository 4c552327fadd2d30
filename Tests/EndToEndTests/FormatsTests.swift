import Foundation
import Inventory
import Planner
@testable import Reconciler
import Rendering
import Reuse
import Testing
import TestSupport

/// The three files wgpm writes for itself — lock, saved plan, recorded inventory — each read
/// back to the same value, and each refusing a format_version it does not know.

let hexA = String(repeating: "a", count: 64)
let hexB = String(repeating: "b", count: 40)
let hexCommit = String(repeating: "c", count: 40)

let lockFiles = [
    DesiredFile(path: "ckpts/umt5-xxl/tokenizer.json", url: "https://huggingface.co/DeepBeepMeep/Wan2.1/resolve/main/umt5-xxl/tokenizer.json",
                repo: "DeepBeepMeep/Wan2.1", commit: hexCommit, expected: FileIdentity(size: 16_837_417, gitSHA1: hexB), wantedBy: ["i2v_2_2", "t2v"]),
    DesiredFile(path: "ckpts/a.safetensors", url: "https://huggingface.co/o/r/resolve/main/a.safetensors", repo: "o/r", commit: hexCommit,
                expected: FileIdentity(size: 0, sha256: hexA), wantedBy: ["t2v"], downloadable: false),
    DesiredFile(path: "loras/wan/x.safetensors", url: "http://example.invalid/x.safetensors", wantedBy: ["files:"]),
]

@Test func lockRoundTrip() throws {
    let dir = try TempDir("formats")
    defer { dir.remove() }
    let lock = LockFile(manifestSHA256: hexA, files: lockFiles)
    try lock.write(to: dir.file("wgpm.lock"))
    let text = try String(contentsOfFile: dir.file("wgpm.lock"), encoding: .utf8)
    #expect(try LockFile.load(dir.file("wgpm.lock")) == lock)
    #expect(try LockFile.load(dir.file("wgpm.lock"))?.render() == text, "the same bytes again")
    #expect(try LockFile.load(dir.file("absent.lock")) == nil)
    // The keys are the format (SPEC §1): sorted, one per line, wan2gp_downloads only when false.
    #expect(text.hasPrefix("{\n  \"files\" : [\n    {\n      \"commit\" : \"\(hexCommit)\",\n"))
    for key in ["\"format_version\" : 1", "\"manifest_sha256\" : \"\(hexA)\"", "\"generated_by\" : \"wgpm lock\"", "\"git_sha1\" : \"\(hexB)\"",
                "\"wan2gp_downloads\" : false", "\"wanted_by\" : [", "\"size\" : 0", "\"url\" : \"http://example.invalid/x.safetensors\""] {
        #expect(text.contains(key), "\(key)")
    }
    #expect(text.components(separatedBy: "wan2gp_downloads").count == 2)
    #expect(!text.contains("\\/"), "slashes are not escaped")
}

@Test func lockOfAnUnknownFormatVersionIsRefused() throws {
    let dir = try TempDir("formats")
    defer { dir.remove() }
    try dir.write("wgpm.lock", #"{"format_version": 2, "manifest_sha256": "", "files": []}"#)
    #expect(throws: FormatError(file: dir.file("wgpm.lock"), kind: .lock,
                                reason: "its format_version is 2, and this wgpm reads only format_version 1",
                                remedy: "Use the wgpm that wrote it, or fix or remove the entries named below (and find out who changed the lock), or run 'wgpm lock --update' to resolve every file again.")) {
        try LockFile.load(dir.file("wgpm.lock"))
    }
    for (text, reason) in [("[1, 2]", "it is not a wgpm lock file (its top level is not a JSON object)"), ("{\"files\": []}", "it is not a wgpm lock file (a JSON object without format_version)"),
                           ("version: 1", "it is not a wgpm lock file (it is not JSON)"), ("{\"files\": [", "it is broken JSON"),
                           ("{\"format_version\": \"1\"}", "its format_version is not a whole number"),
                           ("{\"format_version\": 1, \"manifest_sha256\": \"\", \"files\": [{\"path\": \"ckpts/x\"}]}",
                            "it does not have the shape of format_version 1 (files[0].url is missing)"),
                           ("{\"format_version\": 1, \"manifest_sha256\": \"\", \"files\": [{\"path\": \"ckpts/x\", \"url\": \"https://h/x\", \"size\": \"big\"}]}",
                            "it does not have the shape of format_version 1 (files[0].size is not a whole number)")] {
        try dir.write("wgpm.lock", text)
        do {
            _ = try LockFile.load(dir.file("wgpm.lock"))
            Issue.record("accepted \(text)")
        } catch let error as FormatError {
            #expect(error.description.hasPrefix(dir.file("wgpm.lock") + ": " + reason), "\(error)")
        }
    }
}

@Test func everyBadLockEntryIsReportedAtOnce() throws {
    let dir = try TempDir("formats")
    defer { dir.remove() }
    func entry(_ path: String, url: String = "https://huggingface.co/o/r/resolve/main/x", extra: String = "") -> String {
        let quoted = String(decoding: try! JSONEncoder().encode(path), as: UTF8.self)
        return "{\"path\": \(quoted), \"url\": \"\(url)\"\(extra)}"
    }
    let entries = [
        entry("ckpts/ok.safetensors"),
        entry("ckpts/../../../../tmp/x"),
        entry("ckpts/a\u{0}b"),
        entry("/etc/passwd"),
        entry("ckpts/ok.safetensors"),
        entry("ckpts/s", extra: ", \"sha256\": \"ABC\""),
        entry("ckpts/g", extra: ", \"git_sha1\": \"\(hexA)\""),
        entry("ckpts/n", extra: ", \"size\": -1"),
        entry("ckpts/u", url: "file:///etc/passwd"),
        entry("ckpts/c", extra: ", \"commit\": \"../../main\""),
    ]
    try dir.write("wgpm.lock", "{\"format_version\": 1, \"manifest_sha256\": \"\", \"files\": [\(entries.joined(separator: ","))]}")
    do {
        _ = try LockFile.load(dir.file("wgpm.lock"))
        Issue.record("a bad lock was accepted")
    } catch let error as FormatError {
        #expect(error.entries == [
            "files[1]: path 'ckpts/../../../../tmp/x' climbs out of its folder ('..' is not allowed)",
            "files[2]: path 'ckpts/a?b' contains a control character or an invisible one (NUL, newline, zero-width space, bidi mark …)",
            "files[3]: path '/etc/passwd' must be relative (e.g. ckpts/x.safetensors), not absolute",
            "files[4] 'ckpts/ok.safetensors': listed twice (also files[0])",
            "files[5] 'ckpts/s': sha256 must be 64 lowercase hexadecimal characters",
            "files[6] 'ckpts/g': git_sha1 must be 40 lowercase hexadecimal characters",
            "files[7] 'ckpts/n': size must not be negative",
            "files[8] 'ckpts/u': url 'file:///etc/passwd' is not an http(s) URL",
            "files[9] 'ckpts/c': commit must be 40 lowercase hexadecimal characters",
        ])
        #expect(error.description.hasPrefix("\(dir.file("wgpm.lock")): 9 entries are not acceptable, so this lock file cannot be used; nothing was planned or enqueued. Fix or remove"))
        #expect(!error.description.contains("\u{0}"))
    }
}

@Test func recordedInventoryRoundTrip() throws {
    let dir = try TempDir("formats")
    defer { dir.remove() }
    let recorded = RecordedInventory(paths: [
        "ckpts/a.safetensors": .file(FileContent(size: 12, sha256: hexA, gitSHA1: hexB)),
        "ckpts/l.safetensors": .symlink(target: "/srv/models/l.safetensors", content: FileContent(size: 3, sha256: hexA)),
        "ckpts/dangling": .symlink(target: "/nowhere", content: nil),
        "ckpts/dir": .directory,
        "loras/fifo": .other,
    ], filesystems: ["ckpts": FilesystemInfo(id: "dev:1", mountPoint: "/srv", freeBytes: 1 << 40),
                     "loras": FilesystemInfo(id: "dev:2", mountPoint: "/", freeBytes: 5)])
    try recorded.write(to: dir.file("box.json"))
    let back = try RecordedInventory.load(dir.file("box.json"))
    #expect(back.paths == recorded.paths)
    #expect(back.filesystems == recorded.filesystems)
    #expect(try back.render() == String(contentsOfFile: dir.file("box.json"), encoding: .utf8))
    let observed = back.observed(for: [DesiredFile(path: "ckpts/a.safetensors", url: ""), DesiredFile(path: "loras/none", url: "")])
    #expect(observed.paths == ["ckpts/a.safetensors": .file(FileContent(size: 12, sha256: hexA, gitSHA1: hexB)), "loras/none": .missing])
    #expect(observed.filesystemOf["loras/none"]?.id == "dev:2")
}

@Test func recordedInventoryOfAnUnknownFormatVersionOrWithBadPathsIsRefused() throws {
    let dir = try TempDir("formats")
    defer { dir.remove() }
    try dir.write("box.json", #"{"format_version": 7, "entries": [], "filesystems": {}}"#)
    do {
        _ = try RecordedInventory.load(dir.file("box.json"))
        Issue.record("accepted format_version 7")
    } catch let error as FormatError {
        #expect(error.description.hasPrefix("\(dir.file("box.json")): its format_version is 7, and this wgpm reads only format_version 1, so this recorded inventory cannot be used"))
        #expect(error.description.hasSuffix("Use the wgpm that wrote it, or record it again with 'wgpm inventory --json -o FILE' on that machine."))
    }
    try dir.write("box.json", #"{"format_version": 1, "filesystems": {}, "entries": [{"path": "ckpts/../x", "kind": "file", "size": 1}, {"path": "ckpts/f", "kind": "file"}]}"#)
    do {
        _ = try RecordedInventory.load(dir.file("box.json"))
        Issue.record("accepted bad entries")
    } catch let error as FormatError {
        #expect(error.entries == ["entries[0]: path 'ckpts/../x' climbs out of its folder ('..' is not allowed)", "entries[1] 'ckpts/f': a file needs its size"])
    }
    try dir.write("box.json", #"{"format_version": 1, "filesystems": {}, "entries": [{"path": "ckpts/f", "kind": "socket"}]}"#)
    #expect(throws: FormatError.self) { try RecordedInventory.load(dir.file("box.json")) }
}

/// A plan as `plan` computes it, without a machine: two downloads (one of unknown size), a
/// link, a conflict.
func samplePlanResult() -> PlanResult {
    let desired = [
        DesiredFile(path: "ckpts/a.safetensors", url: "https://huggingface.co/o/r/resolve/main/a.safetensors", repo: "o/r", commit: hexCommit,
                    expected: FileIdentity(size: 10, sha256: hexA), wantedBy: ["t2v"]),
        DesiredFile(path: "ckpts/b.safetensors", url: "https://huggingface.co/o/r/resolve/main/b.safetensors", repo: "o/r", commit: hexCommit,
                    expected: FileIdentity(size: 20, sha256: String(repeating: "d", count: 64)), wantedBy: ["t2v"], downloadable: false),
        DesiredFile(path: "ckpts/dir", url: "https://huggingface.co/o/r/resolve/main/dir", expected: FileIdentity(size: 1, gitSHA1: hexB)),
        DesiredFile(path: "loras/wan/x.safetensors", url: "http://example.invalid/x.safetensors", wantedBy: ["files:"]),
    ]
    let fs = FilesystemInfo(id: "dev:1", mountPoint: "/srv", freeBytes: 1 << 30)
    var observed = ObservedState(paths: ["ckpts/a.safetensors": .missing, "ckpts/b.safetensors": .missing, "ckpts/dir": .directory,
                                         "loras/wan/x.safetensors": .missing])
    observed.candidates["ckpts/b.safetensors"] = [ReuseCandidate(source: "directory:/m", path: "/m/b.safetensors",
                                                                 content: FileContent(size: 20, sha256: String(repeating: "d", count: 64)))]
    for f in desired { observed.filesystemOf[f.path] = fs }
    let plan = makePlan(desired: desired, observed: observed, options: PlanOptions(reserveBytes: 5))
    return PlanResult(plan: plan, desired: desired, observed: observed, warnings: [], metadata: MetadataStats(),
                      inventory: InventoryStats(), reuse: ReuseStats(), fingerprint: ["manifest_content_sha256": hexA, "catalog_sha256": hexA,
                                                                                      "desired_sha256": hexA, "observed_sha256": hexA])
}

@Test func savedPlanRoundTrip() throws {
    let dir = try TempDir("formats")
    defer { dir.remove() }
    let result = samplePlanResult()
    #expect(Set(result.plan.actions.map(\.kind)) == [.download, .link, .conflict], "\(result.plan.actions)")
    let saved = SavedPlan(result, document: result.document(manifest: "wgpm.yaml"), pruned: true)
    try saved.write(to: dir.file("plan.json"))
    let back = try SavedPlan.load(dir.file("plan.json"))
    #expect(back == saved)
    #expect(back.pruned && back.observed["ckpts/dir"] == "directory")
    #expect(try back.render() == String(contentsOfFile: dir.file("plan.json"), encoding: .utf8))
    #expect(back.stalenessReason(fresh: result) == nil, "a plan is not stale against itself")
    var moved = result
    moved.observed.paths["ckpts/a.safetensors"] = .file(FileContent(size: 10))
    #expect(back.stalenessReason(fresh: moved) == "ckpts/a.safetensors changed since the plan was made (was: missing; now: file size=10 sha256=- sha1=-)")

    // The schema's shapes: an unknown download size is null, a link names source, basis and mode.
    let text = try String(contentsOfFile: dir.file("plan.json"), encoding: .utf8)
    #expect(text.contains("\"kind\" : \"download\",\n        \"size\" : null,"), "\(text)")
    #expect(text.contains("\"basis\" : \"sha256\""), "\(text)")
    #expect(text.contains("\"wan2gp_downloads\" : false"))
    let json = try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
    #expect(Set(json.keys) == ["format_version", "changes", "manifest", "actions", "unchanged", "summary", "stats", "fingerprint", "observed", "pruned"])
    #expect((json["summary"] as? [String: Any])?["unknown_size_downloads"] as? Int == 1)

    // What `plan --json` prints is the same document without the saved plan's three keys.
    let printed = try JSONSerialization.jsonObject(with: Data(try renderJSON(result.document(manifest: "wgpm.yaml")).utf8)) as? [String: Any]
    #expect(Set(printed?.keys ?? [:].keys) == ["format_version", "changes", "manifest", "actions", "unchanged", "summary", "stats"])
}

@Test func savedPlanOfAnUnknownFormatVersionIsRefused() throws {
    let dir = try TempDir("formats")
    defer { dir.remove() }
    let result = samplePlanResult()
    let text = try SavedPlan(result, document: result.document(manifest: "wgpm.yaml"), pruned: false).render()
    try dir.write("plan.json", text.replacingOccurrences(of: "\"format_version\" : 1", with: "\"format_version\" : 0"))
    do {
        _ = try SavedPlan.load(dir.file("plan.json"))
        Issue.record("accepted format_version 0")
    } catch let error as FormatError {
        #expect(error.description == "\(dir.file("plan.json")): its format_version is 0, and this wgpm reads only format_version 1, so this saved plan cannot be used; nothing was planned or enqueued. Use the wgpm that wrote it, or make a new one with 'wgpm plan -o FILE' and review it.")
    }
    try dir.write("plan.json", text.replacingOccurrences(of: "\"ckpts/dir\" : \"directory\"", with: "\"/etc/dir\" : \"directory\""))
    do {
        _ = try SavedPlan.load(dir.file("plan.json"))
        Issue.record("accepted an absolute observed path")
    } catch let error as FormatError {
        #expect(error.entries == ["observed: path '/etc/dir' must be relative (e.g. ckpts/x.safetensors), not absolute"])
    }
}
