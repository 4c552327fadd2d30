import Crypto
import Foundation
import Planner
import Testing
import TestSupport

func sha256Hex(_ data: Data) -> String { SHA256.hash(data: data).map { String(format: "%02x", $0) }.joined() }

func bigPayload(_ count: Int) -> Data {
    var bytes = [UInt8](repeating: 0, count: count)
    for i in 0..<count { bytes[i] = UInt8(truncatingIfNeeded: i &* 2_654_435_761 >> 13) }
    return withSafetensorsStart(Data(bytes))
}

let bigURL = "https://huggingface.co/extra/big/resolve/main/weights/big.safetensors"

/// A machine whose manifest wants t2v plus one large file that the fake Hub serves slowly enough
/// (through bandwidth_limit_kb) to be interrupted.
func slowMachine(size: Int = 12 << 20, limitKB: Int = 2000, minFreeGB: Int = 0) throws -> (Machine, Data) {
    let m = try Machine(manifest: """
        version: 1
        files:
          - url: \(bigURL)
            path: ckpts/big.safetensors
        """)
    let data = bigPayload(size)
    try m.hub.addFile(repo: "extra/big", path: "weights/big.safetensors", data)
    try m.writeConfig("""
        parallel_downloads: 1
        bandwidth_limit_kb: \(limitKB)
        min_free_gb: \(minFreeGB)
        """)
    return (m, data)
}

func startWGPM(_ m: Machine, _ args: [String]) throws -> (Process, Pipe) {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: wgpm)
    p.arguments = args
    var env = ProcessInfo.processInfo.environment
    env["HF_ENDPOINT"] = m.hub.hubURL
    env["HOME"] = m.dir.path
    env["HF_TOKEN"] = nil
    env["WGPM_CONFIG"] = nil
    p.environment = env
    p.currentDirectoryURL = URL(fileURLWithPath: m.dir.path)
    let err = Pipe()
    p.standardError = err
    p.standardOutput = FileHandle.nullDevice
    p.standardInput = FileHandle.nullDevice
    try p.run()
    return (p, err)
}

func waitFor(_ seconds: Double, _ condition: () -> Bool) -> Bool {
    let deadline = Date().addingTimeInterval(seconds)
    while Date() < deadline {
        if condition() { return true }
        Thread.sleep(forTimeInterval: 0.05)
    }
    return condition()
}

func partialSize(_ m: Machine) -> Int {
    let dir = m.dir.file("ckpts/.wgpm-partial")
    let names = (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []
    return names.compactMap { try? FileManager.default.attributesOfItem(atPath: dir + "/" + $0)[.size] as? Int }.max() ?? 0
}

@Test func applyThenPlanShowsNoChanges() throws {
    let m = try Machine(manifest: manifestText,
                        extraURLs: ["https://huggingface.co/extra/loras/resolve/main/style/painterly.safetensors"])
    let refused = try m.wgpmRun(["apply"])
    #expect(refused.status == 1 && refused.stderr.contains("pass --yes"), "\(refused.stderr)")
    #expect(!FileManager.default.fileExists(atPath: m.dir.file("ckpts")), "nothing done without confirmation")

    let applied = try m.wgpmRun(["apply", "--yes"])
    #expect(applied.status == 0, "\(applied.stderr)")
    #expect(applied.stdout.contains("Applied: 40 done, 0 failed"))
    let after = try m.wgpmRun(["plan", "--detailed-exitcode"])
    #expect(after.status == 0, "\(after.stdout)")
    #expect(after.stdout.contains("No changes. 40 files"))
    #expect(m.hub.requests().filter { $0.listener == "cdn" }.allSatisfy { !$0.auth })
    let again = try m.wgpmRun(["apply", "--yes"])
    #expect(again.status == 0 && again.stdout.contains("No changes"))
    let queue = try m.wgpmRun(["queue", "status", "--json"])
    let jobs = ((try JSONSerialization.jsonObject(with: Data(queue.stdout.utf8)) as? [String: Any])?["jobs"] as? [[String: Any]]) ?? []
    #expect(jobs.count == 40 && jobs.allSatisfy { $0["state"] as? String == "done" })

    // Prune: drop i2v_2_2 from the manifest; only the two transformers wgpm placed for it go.
    try m.dir.write("my-own.safetensors", "a user's file")
    try m.dir.write("wgpm.yaml", manifestText.replacingOccurrences(of: "  - id: i2v_2_2\n    transformer_quantization: bf16\n", with: ""))
    let prunePlan = try m.wgpmRun(["plan", "--prune", "--json"])
    let removes = ((try JSONSerialization.jsonObject(with: Data(prunePlan.stdout.utf8)) as? [String: Any])?["actions"] as? [[String: Any]] ?? [])
        .filter { $0["action"] as? String == "remove" }.compactMap { $0["path"] as? String }
    #expect(removes == ["ckpts/wan2.2_image2video_14B_high_mbf16.safetensors", "ckpts/wan2.2_image2video_14B_low_mbf16.safetensors"])
    let bytes = ["high", "low"].map { (try? FileManager.default.attributesOfItem(atPath: m.dir.file("ckpts/wan2.2_image2video_14B_\($0)_mbf16.safetensors"))[.size] as? Int) ?? 0 }
        .reduce(0, +)
    let summary = (try JSONSerialization.jsonObject(with: Data(prunePlan.stdout.utf8)) as? [String: Any])?["summary"] as? [String: Any]
    #expect(summary?["prunable"] as? Int == 2 && summary?["prunable_bytes"] as? Int == bytes, "\(summary ?? [:])")
    // The plain plan says what --prune would do; the prune plan says what it frees.
    let plain = try m.wgpmRun(["plan"], env: ["NO_COLOR": "1"]).stdout.replacingOccurrences(of: "\n", with: " ")
    #expect(plain.contains("2 files wgpm placed are no longer wanted (\(formatBytes(Int64(bytes)))); 'wgpm plan --prune' shows their removal."), "\(plain)")
    let human = try m.wgpmRun(["plan", "--prune"], env: ["NO_COLOR": "1"]).stdout.replacingOccurrences(of: "\n", with: " ")
    #expect(human.contains("2 to remove (\(formatBytes(Int64(bytes))) freed)"), "\(human)")
    let pruned = try m.wgpmRun(["apply", "--yes", "--prune"])
    #expect(pruned.status == 0, "\(pruned.stderr)")
    #expect(!FileManager.default.fileExists(atPath: m.dir.file("ckpts/wan2.2_image2video_14B_high_mbf16.safetensors")))
    #expect(FileManager.default.fileExists(atPath: m.dir.file("my-own.safetensors")))
    #expect(try m.wgpmRun(["plan", "--prune", "--detailed-exitcode"]).status == 0)
}

@Test func savedPlanIsAppliedOnlyWhileTrue() throws {
    let m = try Machine(manifest: "version: 1\nmodels: [t2v]\n")
    #expect(try m.wgpmRun(["plan", "-o", "plan.json"]).status == 0)
    try m.dir.write("ckpts/Wan2.1_VAE.safetensors", "changed since the plan")
    let stale = try m.wgpmRun(["apply", "plan.json"])
    #expect(stale.status == 1)
    #expect(stale.stderr.contains("plan.json is stale: ckpts/Wan2.1_VAE.safetensors changed since the plan was made"), "\(stale.stderr)")
    #expect(!FileManager.default.fileExists(atPath: m.dir.file("ckpts/umt5-xxl")), "nothing applied from a stale plan")
    try FileManager.default.removeItem(atPath: m.dir.file("ckpts/Wan2.1_VAE.safetensors"))
    try m.dir.write("wgpm.yaml", "version: 1\nmodels: [t2v, i2v_2_2]\n")
    let edited = try m.wgpmRun(["apply", "plan.json"])
    #expect(edited.stderr.contains("the manifest changed"), "\(edited.stderr)")
    // Comments and layout are not meaning: the plan stays valid through them.
    try m.dir.write("wgpm.yaml", "# the render box\nversion: 1\nmodels:\n  - t2v   # text to video\n")
    // The plan names its manifest and config: applied alone, from another folder.
    try m.dir.write("elsewhere/README", "")
    let fresh = try run(wgpm, ["apply", m.dir.file("plan.json")], environment: ["HF_ENDPOINT": m.hub.hubURL, "HOME": m.dir.path],
                        cwd: m.dir.file("elsewhere"))
    #expect(fresh.status == 0, "\(fresh.stderr)")
    #expect(fresh.stdout.contains("Applied: 37 done"))
    #expect(try m.wgpmRun(["plan", "--detailed-exitcode"]).status == 0)
}

@Test func killNineMidDownloadThenResume() throws {
    let (m, data) = try slowMachine()
    let (p, _) = try startWGPM(m, ["apply", "--yes"])
    #expect(waitFor(30) { partialSize(m) > 2 << 20 }, "the download started")
    kill(p.processIdentifier, SIGKILL)
    p.waitUntilExit()
    let kept = partialSize(m)
    #expect(kept > 0 && kept < data.count, "the partial survived kill -9")
    #expect(!FileManager.default.fileExists(atPath: m.dir.file("ckpts/big.safetensors")), "no partial file at the final path")
    try m.dir.write("config.yaml", (try String(contentsOfFile: m.dir.file("config.yaml"), encoding: .utf8))
        .replacingOccurrences(of: "bandwidth_limit_kb: 2000", with: "bandwidth_limit_kb: 0"))
    let resumed = try m.wgpmRun(["apply", "--yes"])
    #expect(resumed.status == 0, "\(resumed.stderr)")
    let gets = m.hub.requests(atLeast: 2).filter { $0.listener == "cdn" && $0.method == "GET" }
    let lastRange = gets.last?.range ?? ""
    let offset = Int(lastRange.dropFirst("bytes=".count).dropLast()) ?? 0
    #expect(lastRange.hasPrefix("bytes=") && offset >= kept, "resumed with Range: \(lastRange) after \(kept) bytes")
    #expect(gets.last?.status == 206)
    #expect(gets.last?.bytes == data.count - offset, "only the rest was sent")
    let placed = try Data(contentsOf: URL(fileURLWithPath: m.dir.file("ckpts/big.safetensors")))
    #expect(sha256Hex(placed) == sha256Hex(data))
    #expect(try m.wgpmRun(["plan", "--detailed-exitcode"]).status == 0)
}

@Test func twoAppliesAtOnce() throws {
    let (m, data) = try slowMachine(size: 8 << 20, limitKB: 3000)
    let (first, _) = try startWGPM(m, ["apply", "--yes"])
    #expect(waitFor(30) { partialSize(m) > 1 << 20 })
    let impatient = try m.wgpmRun(["apply", "--yes", "--lock-timeout", "0.5"])
    #expect(impatient.status == 1)
    #expect(impatient.stderr.contains("is running the queue"), "\(impatient.stderr)")
    let (second, secondErr) = try startWGPM(m, ["worker"])
    first.waitUntilExit()
    second.waitUntilExit()
    let secondText = String(decoding: secondErr.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    #expect(first.terminationStatus == 0)
    #expect(second.terminationStatus == 0, "\(secondText)")
    #expect(secondText.contains("waiting for it to finish"))
    let gets = m.hub.requests().filter { $0.listener == "cdn" && $0.method == "GET" }
    #expect(gets.count == 1, "the file was downloaded once")
    #expect(sha256Hex(try Data(contentsOf: URL(fileURLWithPath: m.dir.file("ckpts/big.safetensors")))) == sha256Hex(data))
}

@Test func readOnlyCkptsIsAClearErrorAndLosesNothing() throws {
    let m = try Machine(manifest: "version: 1\nmodels: [t2v]\n")
    let mine = try m.dir.write("ckpts/Wan2.1_VAE.safetensors", "the user's own file, wrong for the manifest")
    for dir in ["", "/state"] {
        try FileManager.default.createDirectory(atPath: m.dir.path + dir, withIntermediateDirectories: true)
        chmod(m.dir.path + dir, 0o777)
    }
    chmod(m.dir.file("ckpts"), 0o555)
    defer { chmod(m.dir.file("ckpts"), 0o755) }
    let result: RunResult
    if getuid() == 0 {
        // root ignores permissions: run as nobody, for whom ckpts/ is read-only.
        chmod(m.dir.file("config.yaml"), 0o644)
        chmod(m.dir.file("wgpm.yaml"), 0o644)
        result = try run("/usr/bin/setpriv", ["--reuid=65534", "--regid=65534", "--clear-groups", wgpm, "apply", "--yes"],
                         environment: ["HF_ENDPOINT": m.hub.hubURL, "HOME": m.dir.path], cwd: m.dir.path)
    } else {
        result = try m.wgpmRun(["apply", "--yes"])
    }
    #expect(result.status == 1)
    // Refused before anything is queued: the plan already knows the folder cannot be written.
    #expect(result.stdout.replacingOccurrences(of: #"\n +"#, with: " ", options: .regularExpression)
        .contains("BLOCKED: \(m.dir.file("ckpts")) is not writable by this user"), "\(result.stdout)")
    #expect(result.stderr.contains("apply refused"), "\(result.stderr)")
    #expect(try String(contentsOfFile: mine, encoding: .utf8) == "the user's own file, wrong for the manifest")
}

/// Runs wgpm with a pseudo-terminal as its stdin, stdout and stderr (through util-linux
/// `script`), typing `input`; returns the exit status and everything the terminal showed.
func runOnTerminal(_ m: Machine, _ args: [String], input: String, env: [String: String] = [:]) throws -> (status: Int32, screen: String) {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/script")
    let command = ([wgpm] + args).map { "'\($0)'" }.joined(separator: " ")
    p.arguments = ["-q", "-e", "-c", command, "/dev/null"]
    var environment = ProcessInfo.processInfo.environment
    for key in ["HF_TOKEN", "WGPM_CONFIG", "NO_COLOR", "CI", "GITHUB_ACTIONS"] { environment[key] = nil }
    environment["HF_ENDPOINT"] = m.hub.hubURL
    environment["HOME"] = m.dir.path
    environment["TERM"] = "xterm"
    for (k, v) in env { environment[k] = v }
    p.environment = environment
    p.currentDirectoryURL = URL(fileURLWithPath: m.dir.path)
    let stdin = Pipe(), out = Pipe()
    p.standardInput = stdin
    p.standardOutput = out
    p.standardError = out
    try p.run()
    // The terminal buffers the typed line until wgpm reads it; the pipe stays open until the end
    // (an end of input would reach wgpm as a closed terminal).
    stdin.fileHandleForWriting.write(Data(input.utf8))
    let screen = out.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    try? stdin.fileHandleForWriting.close()
    return (p.terminationStatus, String(decoding: screen, as: UTF8.self))
}

/// On a terminal, apply shows the plan and asks; anything but "yes" changes nothing; "yes"
/// applies while redrawing a per-file bar and a total line, and clears them at the end.
@Test func applyAsksOnATerminalAndDrawsBars() throws {
    let (m, data) = try slowMachine(size: 4 << 20, limitKB: 2000)
    let declined = try runOnTerminal(m, ["apply"], input: "no\n")
    #expect(declined.status == 1, "\(declined.screen)")
    #expect(declined.screen.contains("\u{1B}[32m+ download"), "colour on a terminal")
    let text = declined.screen.replacingOccurrences(of: "\u{1B}\\[[0-9;]*m", with: "", options: .regularExpression)
    #expect(text.contains("+ download  ckpts/big.safetensors"))
    #expect(text.contains("Apply these changes? Only 'yes' is accepted:"))
    #expect(text.contains("Apply cancelled; nothing was changed."))
    let plain = try runOnTerminal(m, ["apply"], input: "\n", env: ["NO_COLOR": "1"])
    #expect(plain.status == 1)
    #expect(plain.screen.contains("+ download  ckpts/big.safetensors") && !plain.screen.contains("\u{1B}["), "NO_COLOR is honoured")
    #expect(!FileManager.default.fileExists(atPath: m.dir.file("ckpts/big.safetensors")))
    #expect(!FileManager.default.fileExists(atPath: m.dir.file("ckpts/.wgpm-partial")), "no download started")

    let accepted = try runOnTerminal(m, ["apply"], input: "yes\n")
    #expect(accepted.status == 0, "\(accepted.screen)")
    #expect(FileManager.default.contents(atPath: m.dir.file("ckpts/big.safetensors")) == data)
    #expect(accepted.screen.contains("] "), "a bar was drawn: \(accepted.screen)")
    #expect(accepted.screen.contains("% ") && accepted.screen.contains("ckpts/big.safetensors"))
    #expect(accepted.screen.contains("  total "))
    #expect(accepted.screen.contains("\u{1B}[1A\u{1B}[2K"), "bars are redrawn in place, not scrolled")
    #expect(!accepted.screen.contains("progress: "), "no plain CI lines on a terminal")
}

/// The two-process workflow: a `worker --follow` waits for work; `apply --enqueue-only` (which
/// needs no queue lock) adds the jobs; the worker carries them out and keeps waiting until
/// Ctrl-C; `queue status` shows them done and `queue clear` removes them.
@Test func enqueueOnlyWithAFollowingWorker() throws {
    let (m, data) = try slowMachine(size: 1 << 20, limitKB: 100_000)
    let (worker, workerErr) = try startWGPM(m, ["worker", "--follow"])
    defer { if worker.isRunning { kill(worker.processIdentifier, SIGKILL) } }
    Thread.sleep(forTimeInterval: 0.5)
    let enqueued = try m.wgpmRun(["apply", "--yes", "--enqueue-only", "--lock-timeout", "5"])
    #expect(enqueued.status == 0, "\(enqueued.stderr)")
    #expect(enqueued.stdout.contains("Enqueued 1 new job (1 in this plan); run 'wgpm worker' to carry them out."), "\(enqueued.stdout)")
    #expect(waitFor(30) { FileManager.default.contents(atPath: m.dir.file("ckpts/big.safetensors")) == data })
    #expect(worker.isRunning, "a following worker keeps waiting for work")

    let status = try m.wgpmRun(["queue", "status", "--all"])
    #expect(status.stdout.contains("done") && status.stdout.contains("ckpts/big.safetensors"), "\(status.stdout)")
    #expect(try m.wgpmRun(["queue", "status"]).stdout.contains("(1 finished job not listed; --all lists them)"))
    #expect(status.stdout.contains("Queue: 0 pending, 0 running, 1 done, 0 failed."), "\(status.stdout)")

    kill(worker.processIdentifier, SIGINT)
    // Started by this test process, the worker inherits its blocked signals; it must unblock
    // SIGINT itself. Bounded, so a regression fails here instead of hanging the suite.
    #expect(waitFor(20) { !worker.isRunning }, "Ctrl-C stops a following worker")
    if worker.isRunning { kill(worker.processIdentifier, SIGKILL) }
    worker.waitUntilExit()
    let text = String(decoding: workerErr.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    #expect(worker.terminationStatus == 130, "\(text)")
    #expect(text.contains("done    ckpts/big.safetensors"), "\(text)")

    let cleared = try m.wgpmRun(["queue", "clear"])
    #expect(cleared.stdout.contains("Removed 1 finished job."))
    #expect(try m.wgpmRun(["queue", "status"]).stdout.contains("Queue: 0 pending, 0 running, 0 done, 0 failed."))
    #expect(try m.wgpmRun(["plan", "--detailed-exitcode"]).status == 0)
}

/// Free space is checked before anything is enqueued: a plan that cannot fit leaves no jobs for
/// a worker to trip over, with or without --enqueue-only, and nothing is downloaded.
@Test func aPlanThatDoesNotFitIsNotEnqueued() throws {
    let (m, _) = try slowMachine(size: 1 << 20, limitKB: 100_000, minFreeGB: 100_000_000)
    let preview = try m.wgpmRun(["plan"])
    let flat = preview.stdout.split(whereSeparator: { $0 == " " || $0 == "\n" }).joined(separator: " ")
    #expect(flat.contains("NOT ENOUGH SPACE (min_free_gb keeps 100000.0 TB free)"), "the plan says so first: \(preview.stdout)")
    for extra in [["--enqueue-only"], []] {
        let r = try m.wgpmRun(["apply", "--yes"] + extra)
        #expect(r.status == 1, "\(r.stdout)")
        #expect(r.stderr.contains("not enough space on") && r.stderr.contains("min_free_gb"), "\(r.stderr)")
        #expect(try m.wgpmRun(["queue", "status"]).stdout.contains("Queue: 0 pending, 0 running, 0 done, 0 failed."))
    }
    #expect(m.hub.requests().filter { $0.listener == "cdn" }.isEmpty, "nothing was downloaded")
}
