import Foundation
import Testing
import TestSupport

/// Every path from a lock or a Wan2GP definition passes the one confinement rule before
/// anything is planned, written or enqueued. Each victim below lies inside the temporary
/// machine but outside ckpts/ and loras/, where the code before the rule wrote it.

/// The queue's summary line when no job was ever enqueued.
let emptyQueue = "Queue: 0 pending, 0 running, 0 done, 0 failed."

@Test func aLockWithPathsOutsideCkptsIsRefusedAndNothingIsEnqueued() throws {
    let m = try Machine(manifest: "version: 1\nmodels: [t2v]\n")
    #expect(try m.wgpmRun(["lock"]).status == 0)
    // Real entries (served URLs, true identities) moved to bad paths; the manifest digest still
    // matches, so the lock alone would say what to write.
    var lock = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: m.dir.file("wgpm.lock")))) as? [String: Any])
    var files = try #require(lock["files"] as? [[String: Any]])
    let absoluteVictim = m.dir.file("absolute-victim.safetensors")
    let bad = ["ckpts/../victim.safetensors", "ckpts/x\u{0}y.safetensors", absoluteVictim]
    for (i, path) in bad.enumerated() { files[i]["path"] = path }
    lock["files"] = files
    try m.dir.write("wgpm.lock", try JSONSerialization.data(withJSONObject: lock, options: [.prettyPrinted, .sortedKeys]))
    try m.dir.write("victim.safetensors", "precious")
    try m.dir.write("absolute-victim.safetensors", "precious too")

    for args in [["plan"], ["apply", "--yes"], ["plan", "--locked", "--json"], ["apply", "--yes", "--enqueue-only"]] {
        let r = try m.wgpmRun(args)
        #expect(r.status == 1, "\(args): \(r.stdout.prefix(300)) \(r.stderr)")
        let first = r.stderr.split(separator: "\n").first.map(String.init) ?? ""
        #expect(first.hasSuffix("wgpm.lock: 3 entries are not acceptable, so this lock file cannot be used; nothing was planned or enqueued. Fix or remove the entries named below (and find out who changed the lock), or run 'wgpm lock --update' to resolve every file again."), "\(args): \(r.stderr)")
        #expect(r.stderr.contains("files[0]: path 'ckpts/../victim.safetensors' climbs out of its folder"), "\(r.stderr)")
        #expect(r.stderr.contains("files[1]: path 'ckpts/x?y.safetensors' contains a control character"), "\(r.stderr)")
        #expect(r.stderr.contains("files[2]: path '\(absoluteVictim)' must be relative"), "\(r.stderr)")
        #expect(!r.stdout.contains("done"), "\(args): \(r.stdout)")
    }
    #expect(try String(contentsOfFile: m.dir.file("victim.safetensors"), encoding: .utf8) == "precious")
    #expect(try String(contentsOfFile: absoluteVictim, encoding: .utf8) == "precious too")
    #expect(m.tree() == [], "nothing in ckpts/ or loras/ either")
    let queue = try m.wgpmRun(["queue", "status"])
    #expect(queue.status == 0 && queue.stdout.hasSuffix(emptyQueue + "\n"), "\(queue.stdout)")
    #expect(m.hub.requests().allSatisfy { !$0.path.contains("/resolve/") }, "nothing was downloaded")

    // The way out: resolve every file again without reading the bad lock.
    let fresh = try m.wgpmRun(["lock", "--update"])
    #expect(fresh.status == 0 && fresh.stdout.contains("Wrote wgpm.lock: 37 files"), "\(fresh.stderr)")
    #expect(try m.wgpmRun(["plan", "--locked"]).status == 0)
}

/// The machine's top folder, without the fake Hub's own log and ready files.
func listing(_ dir: String) throws -> [String] {
    try FileManager.default.contentsOfDirectory(atPath: dir).filter { !$0.hasPrefix("fakehub-") }.sorted()
}

/// A copy of the real definitions plus finetunes, and a machine whose ckpts/ sits two levels
/// down (`wan/ckpts`), so that a climbing definition path would land inside the temp machine.
func machineWithFinetunes(_ finetunes: [String: String], manifest: String) throws -> Machine {
    let wan = try TempDir("wan2gp").path
    try FileManager.default.removeItem(atPath: wan)
    try FileManager.default.copyItem(atPath: wan2gpFixture, toPath: wan)
    try FileManager.default.createDirectory(atPath: wan + "/finetunes", withIntermediateDirectories: true)
    for (name, text) in finetunes { try text.write(toFile: wan + "/finetunes/" + name, atomically: true, encoding: .utf8) }
    let m = try Machine(manifest: manifest, wan2gp: wan)
    try m.dir.write("config.yaml", "wan2gp_directory: \(wan)\nckpts_directory: wan/ckpts\nloras_directory: wan/loras\nstate_directory: state\n")
    return m
}

@Test func aFinetuneWhoseTextEncoderFolderClimbsOutIsRefused() throws {
    let m = try machineWithFinetunes(
        ["x.json": #"{"model": {"name": "x", "architecture": "t2v", "URLs": "t2v", "text_encoder_folder": "../.."}}"#],
        manifest: "version: 1\nmodels: [x]\n")
    defer { try? FileManager.default.removeItem(atPath: m.wan2gp) }
    // Where wan/ckpts/../../<text encoder> is: the machine's own folder.
    let victim = m.dir.file("models_t5_umt5-xxl-enc-quanto_int8.safetensors")
    _ = try m.wgpmRun(["queue", "status"])  // the state folder exists before the snapshot
    let before = try listing(m.dir.path)
    for args in [["plan"], ["apply", "--yes"], ["show", "x"], ["lock"]] {
        let r = try m.wgpmRun(args)
        #expect(r.status == 1, "\(args): \(r.stdout.prefix(300)) \(r.stderr)")
        #expect(r.stderr.contains("\(m.wan2gp)/finetunes/x.json: 'text_encoder_folder' of model 'x' gives a path wgpm will not write: path 'ckpts/../../models_t5_umt5-xxl-enc-quanto_int8.safetensors' climbs out of its folder ('..' is not allowed). Fix or remove the definition file; nothing was planned."),
                "\(args): \(r.stderr)")
    }
    #expect(!FileManager.default.fileExists(atPath: victim))
    #expect(!FileManager.default.fileExists(atPath: m.dir.file("wgpm.lock")))
    #expect(try listing(m.dir.path) == before, "nothing new in the machine's folder")
    #expect(!FileManager.default.fileExists(atPath: m.dir.file("wan")), "nor below it")
    let queue = try m.wgpmRun(["queue", "status"])
    #expect(queue.stdout.hasSuffix(emptyQueue + "\n"), "\(queue.stdout)")
}

@Test func aFinetuneWhoseFilesFromKeyValueClimbsOutIsRefused() throws {
    // ltx2_video_vae_file is a files_from_key of the LTX-2 families (support-files.json).
    let m = try machineWithFinetunes(
        ["y.json": #"{"model": {"name": "y", "architecture": "ltx2_19B", "URLs": "ltx2_19B", "ltx2_video_vae_file": "../../victim_vae.safetensors"}}"#],
        manifest: "version: 1\nmodels: [y]\n")
    defer { try? FileManager.default.removeItem(atPath: m.wan2gp) }
    for args in [["plan", "--json"], ["apply", "--yes"]] {
        let r = try m.wgpmRun(args)
        #expect(r.status == 1 && r.stdout.isEmpty, "\(args): \(r.stdout.prefix(300))")
        #expect(r.stderr.contains("\(m.wan2gp)/finetunes/y.json: 'ltx2_video_vae_file' of model 'y' gives a path wgpm will not write: path 'ckpts/../../victim_vae.safetensors' climbs out"),
                "\(args): \(r.stderr)")
    }
    #expect(!FileManager.default.fileExists(atPath: m.dir.file("victim_vae.safetensors")))
    #expect(m.hub.requests().isEmpty, "refused before the Hub was asked anything")
}

@Test func aSavedPlanIsCheckedWhenRead() throws {
    let m = try Machine(manifest: "version: 1\nmodels: [t2v]\n")
    #expect(try m.wgpmRun(["plan", "-o", "plan.json"]).status == 0)
    let text = try String(contentsOfFile: m.dir.file("plan.json"), encoding: .utf8)

    try m.dir.write("newer.json", text.replacingOccurrences(of: "\"format_version\" : 1", with: "\"format_version\" : 2"))
    let newer = try m.wgpmRun(["apply", "newer.json"])
    #expect(newer.status == 1)
    #expect(newer.stderr.contains("newer.json: its format_version is 2, and this wgpm reads only format_version 1, so this saved plan cannot be used"), "\(newer.stderr)")

    // Files that are not plans at all: said so, not "stale", and a manifest is pointed at -m.
    let manifest = try m.wgpmRun(["apply", "wgpm.yaml"])
    #expect(manifest.status == 1)
    #expect(manifest.stderr.contains("wgpm.yaml: it is not a wgpm saved plan (it is not JSON)"), "\(manifest.stderr)")
    #expect(manifest.stderr.contains("'wgpm apply -m wgpm.yaml'") && !manifest.stderr.contains("stale"), "\(manifest.stderr)")
    try m.dir.write("other.json", "{\"a\": 1}")
    let other = try m.wgpmRun(["apply", "other.json"])
    #expect(other.stderr.contains("other.json: it is not a wgpm saved plan (a JSON object without format_version)"), "\(other.stderr)")

    let first = try #require(text.range(of: "\"path\" : \"ckpts/"))
    try m.dir.write("tampered.json", text.replacingCharacters(in: first, with: "\"path\" : \"ckpts/../"))
    let tampered = try m.wgpmRun(["apply", "tampered.json"])
    #expect(tampered.status == 1)
    #expect(tampered.stderr.contains("tampered.json: it names paths outside ckpts/ and loras/"), "\(tampered.stderr)")
    #expect(tampered.stderr.contains("actions[0]: path 'ckpts/../"), "\(tampered.stderr)")

    let printed = try m.wgpmRun(["plan", "--json"])
    try m.dir.write("printed.json", printed.stdout)
    let notSaved = try m.wgpmRun(["apply", "printed.json"])
    #expect(notSaved.status == 1 && notSaved.stderr.contains("printed.json: it has no fingerprint"), "\(notSaved.stderr)")

    let missing = try m.wgpmRun(["apply", "nope.json"])
    #expect(missing.status == 1 && missing.stderr.contains("nope.json: there is no such file"), "\(missing.stderr)")
    #expect(m.tree() == [])
    #expect(try m.wgpmRun(["queue", "status"]).stdout.hasSuffix(emptyQueue + "\n"))
}

/// One bad finetune does not hide the catalog: `wgpm models` names it and lists the rest.
@Test func modelsListsTheRestWhenOneDefinitionIsBad() throws {
    let m = try machineWithFinetunes(
        ["x.json": #"{"model": {"name": "x", "architecture": "t2v", "URLs": "t2v", "text_encoder_folder": "../.."}}"#],
        manifest: "version: 1\nmodels: [t2v]\n")
    defer { try? FileManager.default.removeItem(atPath: m.wan2gp) }
    let r = try m.wgpmRun(["models"])
    #expect(r.status == 0, "\(r.stderr)")
    #expect(r.stderr.contains("model x is not listed"), "\(r.stderr)")
    #expect(r.stdout.contains("t2v ") && !r.stdout.contains("\nx "), "\(r.stdout.suffix(300))")
}

/// A Wan2GP from before 2025-11-28 reads LoRAs from root-level folders (`loras_i2v/` …): a file
/// for one is planned, downloaded beside `loras/` and then in place; a name that is not one of
/// those folders is still refused.
@Test func aRootLevelLoraFolderOfAnOlderWan2GPIsFilledBesideLoras() throws {
    let url = "https://huggingface.co/extra/loras/resolve/main/style/painterly.safetensors"
    let m = try Machine(manifest: "version: 1\nfiles:\n  - url: \(url)\n    path: loras_i2v/painterly.safetensors\n", extraURLs: [url])
    let (plan, json) = try m.planJSON()
    #expect(plan.status == 2, "\(plan.stderr)")
    #expect(actions(json).compactMap { $0["path"] as? String } == ["loras_i2v/painterly.safetensors"])
    let applied = try m.wgpmRun(["apply", "--yes"])
    #expect(applied.status == 0, "\(applied.stderr)")
    let served = try Data(contentsOf: URL(fileURLWithPath: m.hub.root + "/extra/loras/style/painterly.safetensors"))
    #expect(try Data(contentsOf: URL(fileURLWithPath: m.dir.file("loras_i2v/painterly.safetensors"))) == served)
    #expect(try m.wgpmRun(["plan"]).status == 0, "in place: nothing to do")

    try m.dir.write("wgpm.yaml", "version: 1\nfiles:\n  - url: \(url)\n    path: loras_evil/painterly.safetensors\n")
    let bad = try m.wgpmRun(["plan"])
    #expect(bad.status == 1 && bad.stderr.contains("must be below ckpts/ or loras/"), "\(bad.stderr)")
    #expect(!FileManager.default.fileExists(atPath: m.dir.file("loras_evil")))
}
