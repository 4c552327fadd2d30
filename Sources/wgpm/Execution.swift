import ArgumentParser
import Executor
import Foundation
import HubClient
import Manifest
import Reconciler
import Rendering
import State

/// Ctrl-C and SIGTERM stop transfers at the next callback; partial files stay for the next run.
let interruption = CancelFlag()

func installInterruptHandlers() {
    // A parent may have started wgpm with these signals blocked (the mask survives exec, and
    // some supervisors and test runners do block them): Ctrl-C and kill must still stop it.
    var set = sigset_t()
    sigemptyset(&set)
    sigaddset(&set, SIGINT)
    sigaddset(&set, SIGTERM)
    pthread_sigmask(SIG_UNBLOCK, &set, nil)
    for sig in [SIGINT, SIGTERM] {
        signal(sig) { _ in
            if interruption.isSet { _exit(130) }  // a second Ctrl-C stops at once
            interruption.set()
        }
    }
}

/// Options shared by apply and worker.
struct QueueOptions: ParsableArguments {
    @Option(help: "Seconds to wait for another wgpm that holds the queue lock (default: wait as long as it takes).")
    var lockTimeout: Double?
}

/// Takes the queue lock, runs every pending job with progress, and prints what happened.
/// Returns false when a job failed.
func runQueue(reconciler: Reconciler, lockTimeout: Double?, follow: Bool) throws -> Bool {
    let config = reconciler.config
    let lock = QueueLock(stateDirectory: config.stateDirectory)
    try lock.acquire(timeout: lockTimeout) { holder in
        printError("wgpm: another wgpm (\(holder ?? "unknown")) is running the queue; waiting for it to finish…")
    }
    defer { lock.release() }
    installInterruptHandlers()
    let parallel = max(1, config.parallelDownloads)
    let limiter = config.bandwidthLimitKB > 0 ? BandwidthLimiter(bytesPerSecond: Int64(config.bandwidthLimitKB) * 1000) : nil
    let downloader = Downloader(hub: reconciler.hub, transfer: CurlDownload(limiter: limiter),
                                sleeper: reconciler.context.sleeper)
    let pending = try reconciler.state.jobs().filter { $0.state == .pending || $0.state == .running }
    let board = ProgressBoard(jobs: pending.map { ($0.id, $0.bytesTotal) })
    let printer = ProgressPrinter(board: board, terminal: isatty(STDERR_FILENO) == 1 && ProcessInfo.processInfo.environment["CI"] == nil)
    let runner = QueueRunner(
        state: reconciler.state, downloader: downloader, workers: parallel,
        minFreeBytes: config.minFreeBytes, fileSystem: reconciler.context.fileSystem,
        notice: { printer.line("wgpm: \($0)") },
        onJobEnd: { path, error in printer.line(error.map { "  failed  \(path): \($0)" } ?? "  done    \(path)") })
    printer.start()
    let summary = try runner.run(cancel: interruption, board: board, follow: follow)
    printer.stop()
    if summary.interrupted {
        printError("wgpm: \(ExecutorError.cancelled)")
        throw ExitCode(130)
    }
    print("Applied: \(summary.completed.count) done, \(summary.failed.count) failed, \(formatBytes(summary.bytesDownloaded)) downloaded.")
    for (path, error) in summary.failed { printError("wgpm: error: \(path): \(error)") }
    return summary.failed.isEmpty
}

/// Progress on stderr: a redrawn bar on a terminal, a plain line every few seconds elsewhere.
final class ProgressPrinter: @unchecked Sendable {
    let board: ProgressBoard
    let terminal: Bool
    private let lock = NSLock()
    private var running = false
    private var drawn = 0
    private var thread: Thread?

    init(board: ProgressBoard, terminal: Bool) {
        self.board = board
        self.terminal = terminal
    }

    func start() {
        running = true
        let t = Thread { [self] in
            var ticks = 0
            while lock.withLock({ running }) {
                Thread.sleep(forTimeInterval: 0.25)
                ticks += 1
                if terminal { draw() } else if ticks % 20 == 0 { plain() }
            }
        }
        thread = t
        t.start()
    }

    func stop() {
        lock.withLock { running = false }
        if terminal { lock.withLock { clear() } }
    }

    /// A line that scrolls above the bars.
    func line(_ text: String) {
        lock.withLock {
            if terminal { clear() }
            FileHandle.standardError.write(Data((text + "\n").utf8))
        }
    }

    private func clear() {
        if drawn > 0 { FileHandle.standardError.write(Data(String(repeating: "\u{1B}[1A\u{1B}[2K", count: drawn).utf8)) }
        drawn = 0
    }

    private func summaryText(_ s: ProgressBoard.Snapshot) -> String {
        let eta = s.speed > 0 && s.totalBytes > s.doneBytes ? " ETA \(Int(Double(s.totalBytes - s.doneBytes) / s.speed)) s" : ""
        return "\(s.doneFiles)/\(s.totalFiles) files, \(formatBytes(s.doneBytes)) / \(formatBytes(s.totalBytes)), \(formatBytes(Int64(s.speed)))/s\(eta)"
    }

    private func draw() {
        let s = board.snapshot()
        lock.withLock {
            clear()
            var lines: [String] = []
            for a in s.active.prefix(8) {
                let fraction = a.total.map { $0 > 0 ? Double(a.done) / Double($0) : 1 } ?? 0
                let width = 24
                let filled = Int(fraction * Double(width))
                let bar = String(repeating: "#", count: filled) + String(repeating: "-", count: width - filled)
                lines.append("  [\(bar)] \(String(format: "%3.0f", fraction * 100))% \(formatBytes(Int64(a.speed)))/s  \(a.path)")
            }
            let total = s.totalBytes > 0 ? Double(s.doneBytes) / Double(s.totalBytes) : 0
            lines.append("  total \(String(format: "%3.0f", total * 100))%  " + summaryText(s))
            FileHandle.standardError.write(Data((lines.joined(separator: "\n") + "\n").utf8))
            drawn = lines.count
        }
    }

    private func plain() {
        let s = board.snapshot()
        line("progress: " + summaryText(s))
    }
}
