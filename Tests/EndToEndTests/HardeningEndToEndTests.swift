import Crypto
import Foundation
import Testing
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

// The wgpm binary against concurrent installs, a following worker, a closed stderr, a lying
// local store and a subfolder on another filesystem. Each failed before the hardening.

/// Two wgpm installs with different state directories on one ckpts/ take turns: the second
/// waits for the folder lock (here it gives up after 1 s), so neither truncates the other's
/// partial. Before: the second downloaded into the same partial file at the same time.
@Test func twoInstallsOnOneCkptsTakeTurns() throws {
    let (m, data) = try slowMachine(size: 8 << 20, limitKB: 3000)
    let own = try String(contentsOfFile: m.dir.file("config.yaml"), encoding: .utf8)
    try m.dir.write("other.yaml", own.replacingOccurrences(of: "state_directory: state", with: "state_directory: other-state"))
    let (first, _) = try startWGPM(m, ["apply", "--yes"])
    #expect(waitFor(30) { partialSize(m) > 1 << 20 })
    let other = try m.wgpmRun(["apply", "--yes", "--config", "other.yaml", "--lock-timeout", "1"])
    #expect(other.status == 1)
    #expect(other.stderr.contains("is writing \(m.dir.file("ckpts"))"), "\(other.stderr)")
    first.waitUntilExit()
    #expect(first.terminationStatus == 0)
    #expect(sha256Hex(try Data(contentsOf: URL(fileURLWithPath: m.dir.file("ckpts/big.safetensors")))) == sha256Hex(data))
    #expect(m.hub.requests().filter { $0.listener == "cdn" && $0.method == "GET" }.count == 1)
    let again = try m.wgpmRun(["plan", "--config", "other.yaml", "--detailed-exitcode"])
    #expect(again.status == 0, "the other install sees the finished file: \(again.stdout)")
}

/// `apply` beside a running `worker --follow` enqueues, then waits for its own jobs to be
/// carried out by the worker. Before: it waited for the queue lock, which the worker never
/// gives up, and timed out (or waited forever).
@Test func applyBesideAFollowingWorkerWaitsForItsJobs() throws {
    let (m, data) = try slowMachine(size: 2 << 20, limitKB: 2000)
    let (worker, _) = try startWGPM(m, ["worker", "--follow"])
    defer { if worker.isRunning { kill(worker.processIdentifier, SIGKILL) } }
    Thread.sleep(forTimeInterval: 0.5)
    let applied = try m.wgpmRun(["apply", "--yes", "--lock-timeout", "30"])
    #expect(applied.status == 0, "\(applied.stderr)")
    #expect(applied.stderr.contains("waiting for them"), "\(applied.stderr)")
    #expect(applied.stdout.contains("Applied: 1 done, 0 failed (by the running wgpm)."), "\(applied.stdout)")
    #expect(FileManager.default.contents(atPath: m.dir.file("ckpts/big.safetensors")) == data)
    #expect(worker.isRunning, "the worker keeps following")
}

/// stderr closed while apply runs (`wgpm apply 2>&1 | head`): wgpm finishes its job instead of
/// dying of SIGPIPE with the job left "running".
@Test func aClosedStderrDoesNotLeaveAJobRunning() throws {
    let (m, data) = try slowMachine(size: 4 << 20, limitKB: 600)  // ~7 s: the 5 s progress line is written
    let (p, err) = try startWGPM(m, ["apply", "--yes"])
    try err.fileHandleForReading.close()
    #expect(waitFor(60) { !p.isRunning })
    if p.isRunning { kill(p.processIdentifier, SIGKILL) }
    p.waitUntilExit()
    #expect(p.terminationReason == .exit, "killed by signal \(p.terminationStatus)")
    #expect(p.terminationStatus == 0)
    #expect(FileManager.default.contents(atPath: m.dir.file("ckpts/big.safetensors")) == data)
    let status = try m.wgpmRun(["queue", "status"])
    #expect(status.stdout.contains("0 running"), "\(status.stdout)")
}

/// An HF-cache blob whose name claims the VAE's sha256 but whose bytes differ (same size) is
/// not linked: apply downloads the file, and the next plan has no changes. Before: the blob was
/// linked, apply said "done", and every later plan proposed the same bad link again.
@Test func aLyingCacheBlobIsNotLinkedAndThePlanConverges() throws {
    let m = try Machine(manifest: "version: 1\nmodels: [t2v]\n")
    let served = try Data(contentsOf: URL(fileURLWithPath: m.hub.root + "/DeepBeepMeep/Wan2.1/Wan2.1_VAE.safetensors"))
    let sha = SHA256.hash(data: served).map { String(format: "%02x", $0) }.joined()
    var corrupt = served
    corrupt[corrupt.count - 1] ^= 0xFF
    let repo = "hf/models--DeepBeepMeep--Wan2.1"
    try m.dir.write("\(repo)/blobs/\(sha)", corrupt)
    try FileManager.default.createDirectory(atPath: m.dir.file("\(repo)/snapshots/abc"), withIntermediateDirectories: true)
    #expect(symlink("../../blobs/\(sha)", m.dir.file("\(repo)/snapshots/abc/Wan2.1_VAE.safetensors")) == 0)
    try m.writeConfig("sources:\n  - hf_cache: hf\n")

    let (_, json) = try m.planJSON()
    let vae = try #require(actions(json).first { $0["path"] as? String == "ckpts/Wan2.1_VAE.safetensors" })
    #expect(vae["action"] as? String == "link", "the claim is believed at plan time")

    let applied = try m.wgpmRun(["apply", "--yes"])
    #expect(applied.status == 0, "\(applied.stderr)")
    #expect(applied.stderr.contains("does not hold the expected content"), "\(applied.stderr)")
    #expect(FileManager.default.contents(atPath: m.dir.file("ckpts/Wan2.1_VAE.safetensors")) == served)
    let after = try m.wgpmRun(["plan", "--detailed-exitcode"])
    #expect(after.status == 0, "converged: \(after.stdout)")
}

/// A ckpts subfolder that is another filesystem: the partial lives on that filesystem, so the
/// final rename works. Before: every apply failed with EXDEV ("cross-device link"). Needs root.
@Test func aSubfolderOnAnotherFilesystemWorks() throws {
    let m = try Machine(manifest: "version: 1\nmodels: [t2v]\n")
    try m.writeConfig("min_free_gb: 0\n")
    let sub = m.dir.file("ckpts/umt5-xxl")
    try withTmpfs(at: sub, size: "64m") {
        let applied = try m.wgpmRun(["apply", "--yes"])
        #expect(applied.status == 0, "\(applied.stderr)")
        let placed = try FileManager.default.contentsOfDirectory(atPath: sub)
        #expect(placed.contains("models_t5_umt5-xxl-enc-quanto_int8.safetensors"), "\(placed)")
        #expect(placed.contains(".wgpm-partial"), "the partial folder sits on the subfolder's filesystem")
        #expect(try m.wgpmRun(["plan", "--detailed-exitcode"]).status == 0)
    }
}

/// A file error from Foundation reads as one plain sentence, never `Error Domain=…`.
@Test func aFileErrorIsPlainText() throws {
    let m = try Machine(manifest: "version: 1\nmodels: [t2v]\n")
    let r = try m.wgpmRun(["plan", "-o", m.dir.file("no-such-folder/plan.json")])
    #expect(r.status == 1)
    #expect(!r.stderr.contains("Error Domain"), "\(r.stderr)")
    #expect(r.stderr.contains("no such file or directory"), "\(r.stderr)")
}

/// A mistyped command is a usage error with a suggestion (issue 12: "wgpm pln").
@Test func aMistypedCommandGetsASuggestion() throws {
    let r = try run(wgpm, ["pln"])
    #expect(r.status == 64)
    #expect(r.stderr.contains("unknown command 'pln'; did you mean 'plan'?"), "\(r.stderr)")
    #expect(try run(wgpm, ["plan", "--help"]).status == 0)
}

/// Every error has the one prefix, usage errors and command errors alike, and `--config` may
/// come before the subcommand (issue 12).
@Test func errorsHaveOnePrefixAndConfigMayComeFirst() throws {
    let m = try Machine(manifest: "version: 1\nmodels: [t2v]\n")
    let unknownModel = try m.wgpmRun(["show", "zzz"])
    #expect(unknownModel.status == 1 && unknownModel.stderr.hasPrefix("wgpm: error: unknown model id 'zzz'."), "\(unknownModel.stderr)")
    let badFlag = try m.wgpmRun(["plan", "--bogus"])
    #expect(badFlag.status == 64 && badFlag.stderr.hasPrefix("wgpm: error: unknown option '--bogus'"), "\(badFlag.stderr)")
    for r in [unknownModel, badFlag] { #expect(!r.stderr.contains("Error:"), "one prefix: \(r.stderr)") }
    let first = try run(wgpm, ["--config", m.dir.file("config.yaml"), "show", "t2v"], environment: ["HOME": m.dir.path], cwd: "/")
    #expect(first.status == 0 && first.stdout.hasPrefix("t2v: "), "\(first.stderr)")
    #expect(try run(wgpm, ["--version"]).stdout == "wgpm 0.1.0\n")
}

/// Empty cases say what to do (issue 12): a worker with an empty queue, a filter that matches
/// no model, a manifest that wants no files.
@Test func emptyCasesSaySomethingUseful() throws {
    let m = try Machine(manifest: "version: 1\nmodels: []\n")
    let worker = try m.wgpmRun(["worker"])
    #expect(worker.status == 0 && worker.stdout.contains("The queue is empty"), "\(worker.stdout)")
    let models = try m.wgpmRun(["models", "t2vv"])
    #expect(models.stdout.contains("No model's id, name or architecture contains 't2vv'. Did you mean t2v?"), "\(models.stdout)")
    let plan = try m.wgpmRun(["plan"])
    #expect(plan.stdout.contains("The manifest wants no files"), "\(plan.stdout)")
}

/// `queue status` puts what needs attention first, with its attempts and error, and counts the
/// finished jobs instead of listing them (issue 12).
@Test func queueStatusListsFailedJobsFirstAndCountsDoneOnes() throws {
    let (m, _) = try slowMachine(size: 1 << 20, limitKB: 100_000)
    try m.hub.setConfig(["faults": [["listener": "cdn", "method": "GET", "status": 404, "count": 100]]])
    let applied = try m.wgpmRun(["apply", "--yes"])
    #expect(applied.status == 1)
    let status = try m.wgpmRun(["queue", "status"]).stdout
    let lines = status.split(separator: "\n").map(String.init)
    #expect(lines.first?.hasPrefix("  STATE   KIND      RUNS  PROGRESS") == true, "\(status)")
    #expect(lines.dropFirst().first?.hasPrefix("  failed  download  1 ") == true, "\(status)")
    #expect(status.contains("HTTP 404"), "the error is shown under the job: \(status)")
    #expect(status.hasSuffix("Queue: 0 pending, 0 running, 0 done, 1 failed.\n"), "\(status)")
}

/// The target's folder swapped for a symlink to somewhere else *while* the file downloads: the
/// finished file still lands in the folder that was checked (now moved aside), never through the
/// new symlink. Before: the final rename went by path and followed the symlink out.
@Test func aFolderSwappedForASymlinkDuringTheDownloadLeadsNowhere() throws {
    let m = try Machine(manifest: """
        version: 1
        files:
          - url: \(bigURL)
            path: ckpts/sub/big.safetensors
        """)
    let data = bigPayload(8 << 20)
    try m.hub.addFile(repo: "extra/big", path: "weights/big.safetensors", data)
    try m.writeConfig("parallel_downloads: 1\nbandwidth_limit_kb: 3000\nmin_free_gb: 0\n")
    let outside = m.dir.file("outside")
    try FileManager.default.createDirectory(atPath: outside, withIntermediateDirectories: true)
    let (p, _) = try startWGPM(m, ["apply", "--yes"])
    #expect(waitFor(30) { partialSize(m) > 1 << 20 })
    try FileManager.default.moveItem(atPath: m.dir.file("ckpts/sub"), toPath: m.dir.file("ckpts/sub-moved"))
    #expect(symlink(outside, m.dir.file("ckpts/sub")) == 0)
    p.waitUntilExit()
    #expect(try FileManager.default.contentsOfDirectory(atPath: outside).isEmpty, "nothing was written through the new symlink")
    #expect(FileManager.default.contents(atPath: m.dir.file("ckpts/sub-moved/big.safetensors")) == data)
}

/// On an 80-column terminal every progress line fits (a long path loses its middle), so a
/// redraw erases the whole bar instead of leaving a wrapped piece behind (issue 12).
@Test func progressLinesFitAnEightyColumnTerminal() throws {
    let long = "ckpts/" + String(repeating: "very-long-folder-name/", count: 3) + "a-checkpoint-with-a-long-name.safetensors"
    let m = try Machine(manifest: "version: 1\nfiles:\n  - url: \(bigURL)\n    path: \(long)\n")
    try m.hub.addFile(repo: "extra/big", path: "weights/big.safetensors", bigPayload(3 << 20))
    try m.writeConfig("parallel_downloads: 1\nbandwidth_limit_kb: 1500\nmin_free_gb: 0\n")
    let run = try runOnTerminal(m, ["apply", "--yes"], input: "", env: ["NO_COLOR": "1"])
    #expect(run.status == 0, "\(run.screen)")
    let bars = run.screen.replacingOccurrences(of: "\u{1B}\\[[0-9;]*[A-Za-z]", with: "\n", options: .regularExpression)
        .components(separatedBy: .newlines)
        .filter { $0.hasPrefix("  [") || $0.hasPrefix("  total ") }
    #expect(!bars.isEmpty, "bars were drawn: \(run.screen)")
    #expect(bars.allSatisfy { $0.count <= 79 }, "\(bars.filter { $0.count > 79 })")
    #expect(bars.contains { $0.contains("…") && $0.hasSuffix("name.safetensors") && $0.contains("ckpts/very") }, "the middle of the path is dropped")
}
