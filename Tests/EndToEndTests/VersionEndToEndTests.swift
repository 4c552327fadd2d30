import Catalog
import Foundation
import Testing
import TestSupport

/// A Wan2GP checkout of a version wgpm does not know: the real definitions and a wgp.py.
func unknownCheckout(in dir: TempDir, version: String = "13.1") throws -> String {
    let wan = dir.file("wan2gp")
    try FileManager.default.createDirectory(atPath: wan, withIntermediateDirectories: true)
    try FileManager.default.copyItem(atPath: wan2gpFixture + "/defaults", toPath: wan + "/defaults")
    try "WanGP_version = \"\(version)\"\n".write(toFile: wan + "/wgp.py", atomically: true, encoding: .utf8)
    return wan
}

let newCoreURL = "https://huggingface.co/DeepBeepMeep/Wan2.1/resolve/main/new/core.bin"

/// What this checkout's code would answer for `models`: today's files plus one more core file,
/// as a newer Wan2GP that downloads something new would.
func traceOf(_ wan: String, models: [String], extraCore: String) throws -> Data {
    let catalog = try Catalog.load(wan2gpDirectory: wan, support: SupportFiles.bundled())
    var traced: [String: WanTrace.Model] = [:]
    for id in models {
        var files: [String: (String, Set<Int>)] = [:]
        for index in 0..<12 {
            for f in try catalog.expand(id, settings: ModelSettings(traceIndex: index)) where f.downloadable {
                files[f.path, default: (f.url, [])].1.insert(index)
            }
        }
        files[extraCore] = (newCoreURL, Set(0..<12))
        let arch = catalog.models[id]!.architecture
        traced[id] = .init(architecture: arch, lora_dir: catalog.support.loraDirectory(of: arch, model: id),
                           files: files.mapValues { .init(url: $0.0, settings: $0.1.count == 12 ? nil : $0.1.sorted()) })
    }
    let trace = WanTrace(format_version: 1, wan2gp_commit: nil, wangp_version: "13.1",
                         fingerprint: CheckoutVersion.read(wan).fingerprint, mmgp: nil,
                         settings: ModelSettings.traceOrder, models: traced, errors: nil)
    return try JSONEncoder().encode(trace)
}

@Test func anUnknownVersionWarnsOnEveryPlanUntilTracedAndNeverUnderTheLock() throws {
    let m = try Machine(manifest: "version: 1\nmodels:\n  - t2v\n  - i2v_2_2\n", extraURLs: [newCoreURL])
    let wan = try unknownCheckout(in: m.dir)
    try m.dir.write("config.yaml", "wan2gp_directory: \(wan)\nckpts_directory: ckpts\nloras_directory: loras\nstate_directory: state\n")

    for _ in 0..<2 {
        let r = try m.wgpmRun(["plan"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.warnings.contains("13.1") && r.warnings.contains("wgpm trace") && r.warnings.contains("12.60"), "\(r.stderr)")
    }
    let (_, json) = try m.planJSON()
    let entry = json["wan2gp"] as? [String: Any]
    #expect(entry?["knowledge_kind"] as? String == "fallback")
    #expect(entry?["wangp_version"] as? String == "13.1")
    let doctor = try m.wgpmRun(["doctor"])
    #expect(doctor.stdout.contains("warn  wan2gp_version"), "\(doctor.stdout)")

    // CI with the lock: the lock is the truth, the checkout's version does not matter.
    #expect(try m.wgpmRun(["lock"]).status == 0)
    let locked = try m.wgpmRun(["plan", "--locked"])
    #expect(locked.status == 0, "\(locked.stderr)")
    #expect(!locked.warnings.contains("wgpm trace"), "\(locked.stderr)")

    // `trace` learns this version; from then on plan uses what it learned and is quiet.
    try m.dir.write("trace.json", try traceOf(wan, models: ["t2v", "i2v_2_2"], extraCore: "ckpts/new/core.bin"))
    let t = try m.wgpmRun(["trace", "--trace-file", m.dir.file("trace.json")])
    #expect(t.status == 0, "\(t.stderr)")
    #expect(t.stdout.contains("Stored"), "\(t.stdout)")
    let fingerprint = CheckoutVersion.read(wan).fingerprint
    #expect(FileManager.default.fileExists(atPath: m.dir.file("state/knowledge/\(fingerprint).json")))
    try FileManager.default.removeItem(atPath: m.dir.file("wgpm.lock"))
    let after = try m.wgpmRun(["plan", "--json"])
    #expect(after.status == 0 && !after.warnings.contains("wgpm trace"), "\(after.stderr)")
    let doc = (try? JSONSerialization.jsonObject(with: Data(after.stdout.utf8))) as? [String: Any] ?? [:]
    #expect((doc["wan2gp"] as? [String: Any])?["knowledge_kind"] as? String == "traced")
    let paths = (doc["actions"] as? [[String: Any]] ?? []).compactMap { $0["path"] as? String }
    #expect(paths.contains("ckpts/new/core.bin"), "\(paths.prefix(5))")
    let show = try m.wgpmRun(["show", "t2v", "--json"])
    #expect(show.stdout.contains("\"knowledge_kind\" : \"traced\""), "\(show.stdout.prefix(400))")
    #expect(show.stdout.contains("ckpts/new/core.bin"))
    #expect(try m.wgpmRun(["doctor"]).stdout.contains("ok    wan2gp_version"))
}

@Test func aTraceOfAnotherCheckoutOrWithEscapingPathsIsRefusedAndNothingStored() throws {
    let m = try Machine(manifest: "version: 1\nmodels:\n  - t2v\n")
    let wan = try unknownCheckout(in: m.dir)
    try m.dir.write("config.yaml", "wan2gp_directory: \(wan)\nckpts_directory: ckpts\nloras_directory: loras\nstate_directory: state\n")
    // Made for this checkout, then the checkout changes: the trace is stale.
    try m.dir.write("trace.json", try traceOf(wan, models: ["t2v"], extraCore: "ckpts/new/core.bin"))
    try "WanGP_version = \"13.2\"\n".write(toFile: wan + "/wgp.py", atomically: true, encoding: .utf8)
    let stale = try m.wgpmRun(["trace", "--trace-file", m.dir.file("trace.json")])
    #expect(stale.status == 1)
    #expect(stale.stderr.contains("changed while it was traced"), "\(stale.stderr)")
    // A path that leaves ckpts/ is never learned: the derived knowledge would not reproduce the
    // trace, so nothing is stored.
    try m.dir.write("trace.json", try traceOf(wan, models: ["t2v"], extraCore: "ckpts/../../../etc/cron.d/evil"))
    let evil = try m.wgpmRun(["trace", "--trace-file", m.dir.file("trace.json")])
    #expect(evil.status == 1)
    #expect(evil.stderr.contains("etc/cron.d/evil"), "\(evil.stderr)")
    let stored = (try? FileManager.default.contentsOfDirectory(atPath: m.dir.file("state/knowledge"))) ?? []
    #expect(stored.filter { !$0.hasPrefix(".") }.isEmpty, "\(stored)")
}

/// The pinned mmgp for the tracer (the real one from PyPI; torch stays a stand-in), installed once.
func tracerMMGP() throws -> String {
    let dir = repositoryRoot + "/.build/tracer-mmgp/3.7.12"
    if !FileManager.default.fileExists(atPath: dir + "/mmgp/offload.py") {
        let r = try run("/usr/bin/env", ["python3", "-m", "pip", "install", "-q", "--no-deps", "--target", dir, "mmgp==3.7.12"])
        guard r.status == 0 else { throw CommandFailed(message: "pip could not install mmgp 3.7.12: \(r.stderr)") }
    }
    return dir
}

struct CommandFailed: Error { var message: String }

@Test func traceAsksTheCheckoutsOwnCodeAndPlanUsesTheAnswer() throws {
    let m = try Machine(manifest: "version: 1\nmodels:\n  - mini\n  - mini_audio\n")
    let wan = m.dir.file("mini-wan2gp")
    try FileManager.default.copyItem(atPath: repositoryRoot + "/Tests/Fixtures/mini-wan2gp", toPath: wan)
    try m.dir.write("config.yaml", "wan2gp_directory: \(wan)\nckpts_directory: ckpts\nloras_directory: loras\nstate_directory: state\n")
    let before = try m.wgpmRun(["show", "mini", "--json"])
    #expect(before.warnings.contains("wgpm trace"), "\(before.stderr)")  // unknown version: said, not guessed silently

    let python = try run("/usr/bin/env", ["python3", "-c", "import sys; print(sys.executable)"]).stdout
        .trimmingCharacters(in: .whitespacesAndNewlines)
    let t = try m.wgpmRun(["trace", "--python", python], env: ["PYTHONPATH": try tracerMMGP()])
    #expect(t.status == 0, "\(t.stderr)")
    #expect(t.stdout.contains("Traced 2 models"), "\(t.stdout)")
    // The checkout itself was not written to.
    let entries = try FileManager.default.subpathsOfDirectory(atPath: wan)
    #expect(!entries.contains { $0.hasPrefix("ckpts") || $0.hasPrefix("loras") || $0.contains("__pycache__") || $0.hasSuffix(".json.tmp") },
            "\(entries)")

    // What Wan2GP's own code downloads, under two settings that pick different files.
    let int8 = try m.wgpmRun(["show", "mini", "--json"])
    #expect(int8.stderr.isEmpty, "\(int8.stderr)")
    #expect(int8.stdout.contains("\"knowledge_kind\" : \"traced\""))
    for path in ["ckpts/mini_quanto_bf16_int8.safetensors", "ckpts/mini_te/mini_te_quanto_bf16_int8.safetensors",
                 "ckpts/mini_tokenizer/tokenizer.json", "ckpts/pose/yolox_l.onnx"] {
        #expect(int8.stdout.contains("\"\(path)\""), "\(path)")
    }
    #expect(!int8.stdout.contains("mini_audio/audio.safetensors"))
    let fp16 = try m.wgpmRun(["show", "mini_audio", "--transformer-quantization", "bf16", "--dtype", "fp16", "--json"])
    #expect(fp16.stdout.contains("\"ckpts/mini_audio_bf16.safetensors\"") && fp16.stdout.contains("\"ckpts/mini_audio/audio.safetensors\""),
            "\(fp16.stdout)")
    let doctor = try m.wgpmRun(["doctor"])
    #expect(doctor.stdout.contains("ok    wan2gp_version") && doctor.stdout.contains("traced by `wgpm trace`"), "\(doctor.stdout)")
}

@Test func doctorSaysWhenWan2GPsOwnConfigPlacedTheFoldersOrWasIgnored() throws {
    let m = try Machine(manifest: "version: 1\nmodels:\n  - t2v\n")
    let wan = try unknownCheckout(in: m.dir)
    try FileManager.default.createDirectory(atPath: wan + "/models/ck", withIntermediateDirectories: true)
    try #"{"checkpoints_paths": ["models/ck"]}"#.write(toFile: wan + "/wgp_config.json", atomically: true, encoding: .utf8)
    try m.dir.write("config.yaml", "wan2gp_directory: \(wan)\nstate_directory: state\n")
    let placed = try m.wgpmRun(["doctor"]).stdout
    #expect(placed.contains("ok    ckpts_directory: \(wan)/models/ck (checkpoints_paths[0] in \(wan)/wgp_config.json)"), "\(placed)")
    try "[1".write(toFile: wan + "/wgp_config.json", atomically: true, encoding: .utf8)
    let ignored = try m.wgpmRun(["doctor"]).stdout
    #expect(ignored.contains("warn  wgp_config.json: \(wan)/wgp_config.json is not a JSON object; ignored"), "\(ignored)")
}
