import Crypto
import Foundation
import Testing
import Rendering
import TestSupport

// Golden files for the human output a user reads most: plan, show, queue status and apply's
// summary. They are compared byte for byte (see expectGolden); what differs between machines
// (the scratch folder, free space, durations, speeds) is replaced by a placeholder first.

/// `text` with what differs between runs replaced: the scratch folder by `<dir>`, the local
/// filesystem's mount point and free space by `<fs>` and `<free>`, durations and speeds by `<time>` and `<speed>`.
func stable(_ text: String, _ m: Machine) -> String {
    var out = text.replacingOccurrences(of: m.dir.path, with: "<dir>")
    let patterns: [(String, String)] = [
        (#"\d+(\.\d)? [KMGT]?B free"#, "<free> free"),
        (#"(?m)^  /\S*: "#, "  <fs>: "),
        (#"\d+(\.\d)? [KMGT]?B/s"#, "<speed>"),
        (#"in \d+(\.\d+)? ?(ms|s|min)\b"#, "in <time>"),
        (#"\d+ ?(ms|s) ago"#, "<time> ago"),
    ]
    for (pattern, replacement) in patterns {
        out = out.replacingOccurrences(of: pattern, with: replacement, options: .regularExpression)
    }
    return out
}

/// A machine that applied t2v and i2v_2_2, then changed its manifest: t2v in bf16 and vace_14B
/// instead of i2v_2_2, with the VAE cut short on disk.
func changedMachine() throws -> Machine {
    let m = try Machine(manifest: "version: 1\nmodels:\n  - t2v\n  - i2v_2_2\n")
    let apply = try m.wgpmRun(["apply", "--yes"])
    #expect(apply.status == 0, "\(apply.stderr)")
    try m.dir.write("wgpm.yaml", "version: 1\nmodels:\n  - id: t2v\n    transformer_quantization: bf16\n  - vace_14B\n")
    try m.dir.write("ckpts/Wan2.1_VAE.safetensors", "cut short")
    return m
}

@Test func humanPlanOutputIsGolden() throws {
    let m = try changedMachine()
    let plan = try m.wgpmRun(["plan"], env: ["COLUMNS": "80", "NO_COLOR": "1"])
    #expect(plan.status == 0, "\(plan.stderr)")
    try expectGolden(stable(plan.stdout, m), "plan.txt")
    for line in plan.stdout.split(separator: "\n") { #expect(line.count <= 80, "wider than 80 columns: \(line)") }
    let prune = try m.wgpmRun(["plan", "--prune"], env: ["COLUMNS": "80", "NO_COLOR": "1"])
    #expect(prune.status == 0, "\(prune.stderr)")
    try expectGolden(stable(prune.stdout, m), "plan-prune.txt")
}

@Test func humanShowOutputIsGolden() throws {
    let m = try Machine(manifest: "version: 1\nmodels: []\n")
    let show = try m.wgpmRun(["show", "t2v", "--transformer-quantization", "fp8"], env: ["COLUMNS": "80", "NO_COLOR": "1"])
    #expect(show.status == 0, "\(show.stderr)")
    try expectGolden(stable(show.stdout, m), "show-t2v-fp8.txt")
}

@Test func humanModelsOutputIsGolden() throws {
    let m = try Machine(manifest: "version: 1\nmodels: [t2v]\n")
    let before = try m.wgpmRun(["models", "t2v"], env: ["COLUMNS": "80", "NO_COLOR": "1"])
    #expect(before.status == 0, "\(before.stderr)")
    try expectGolden(stable(before.stdout, m), "models-t2v.txt")
    // After a plan the sizes are known: a SIZE column appears.
    #expect(try m.wgpmRun(["plan"]).status == 0)
    let after = try m.wgpmRun(["models", "t2v"], env: ["COLUMNS": "80", "NO_COLOR": "1"])
    try expectGolden(stable(after.stdout, m), "models-t2v-sized.txt")
    for line in before.stdout.split(separator: "\n") + after.stdout.split(separator: "\n") {
        #expect(line.count <= 80, "wider than 80 columns: \(line)")
    }
}

@Test func humanQueueStatusAndFailedApplyAreGolden() throws {
    let m = try Machine(manifest: "version: 1\nmodels:\n  - t2v\n")
    // Every copy of the VAE the file host sends is wrong, the no-cache retry's included. The
    // file host names blobs by sha256.
    let vae = try Data(contentsOf: URL(fileURLWithPath: m.hub.root + "/DeepBeepMeep/Wan2.1/Wan2.1_VAE.safetensors"))
    let sha = SHA256.hash(data: vae).map { String(format: "%02x", $0) }.joined()
    try m.hub.setConfig(["faults": [["listener": "cdn", "method": "GET", "type": "wrong_bytes",
                                     "path_contains": sha, "count": 999]]])
    let apply = try m.wgpmRun(["apply", "--yes"], env: ["COLUMNS": "80", "NO_COLOR": "1"])
    #expect(apply.status != 0, "a file failed")
    // The plan's rows are plan.txt's business; the workers finish in any order, so the done
    // lines are counted, not compared.
    let summary = apply.stdout.components(separatedBy: "\nPlan: ").last ?? ""
    let stderr = apply.stderr.split(separator: "\n", omittingEmptySubsequences: false)
    #expect(stderr.filter { $0.hasPrefix("  done    ") }.count == 36)
    let told = stderr.filter { !$0.hasPrefix("  done    ") }.joined(separator: "\n")
    try expectGolden(stable("Plan: " + summary + "--- stderr\n" + told, m), "apply-failed.txt")
    #expect(apply.stderr.components(separatedBy: "downloaded bytes do not match").count == 2, "the reason is told once")
    let status = try m.wgpmRun(["queue", "status"], env: ["COLUMNS": "80", "NO_COLOR": "1"])
    try expectGolden(stable(status.stdout, m), "queue-status.txt")
    let all = try m.wgpmRun(["queue", "status", "--all"], env: ["COLUMNS": "80", "NO_COLOR": "1"])
    try expectGolden(stable(all.stdout, m), "queue-status-all.txt")
}

/// Wrapping never parts a number from its unit, and leaves no trailing spaces.
@Test func wrappingKeepsNumbersWithTheirUnits() {
    let text = "(size differs: 10 B on disk, 154.1 KB expected; download)  154.1 KB  DeepBeepMeep/Wan2.1@0c52060"
    for width in 40...100 {
        let lines = wrapped(text, indent: 14, width: width)
        for line in lines {
            #expect(!line.hasSuffix(" "), "trailing space at width \(width): '\(line)'")
            #expect(!line.hasSuffix("154.1") && !line.hasSuffix(" 10"), "a number without its unit at width \(width): '\(line)'")
        }
        #expect(lines.joined(separator: " ").split(separator: " ").joined(separator: " ") == text.split(separator: " ").joined(separator: " "))
    }
}
