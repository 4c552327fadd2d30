import ArgumentParser
import Executor
import Foundation
import Planner
import HubClient
import Manifest
import Reconciler
import Rendering
import State
import Synchronization

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

/// Takes the queue lock and the locks of the target folders, runs every pending job with
/// progress, and prints what happened. Returns false when a job failed.
///
/// `ownJobs` (apply): when another wgpm already runs this queue (`worker --follow`, another
/// apply), that one carries out the jobs just enqueued; this waits for them to end instead of
/// for the lock, and takes over only if the other stops first.
func runQueue(reconciler: Reconciler, lockTimeout: Double?, follow: Bool, ownJobs: [String]? = nil) throws -> Bool {
    let config = reconciler.config
    let confinement = Confinement(mapper: reconciler.mapper, linkedFolders: config.linkedFolders)
    try reconciler.state.open()  // makes the state folder, where the queue's lock lives
    let locks = RunLocks(stateDirectory: config.stateDirectory, folderLocks: try RunLocks.folderLocks(confinement))
    defer { locks.release() }
    installInterruptHandlers()
    let stop = { interruption.isSet }
    do {
        if let ownJobs, !(try locks.tryQueue()) {
            if let finished = try waitForJobs(ownJobs, locks: locks, state: reconciler.state, timeout: lockTimeout) {
                return finished
            }
        } else if ownJobs == nil {
            try locks.acquireQueue(timeout: lockTimeout, shouldStop: stop) { _, holder in
                printError("wgpm: another wgpm (\(holder ?? "unknown")) is running the queue; waiting for it to finish…")
            }
        }
        try locks.acquireFolders(timeout: lockTimeout, shouldStop: stop) { lock, holder in
            printError("wgpm: another wgpm (\(holder ?? "unknown")) is writing \(lock.what); waiting for it to finish…")
        }
    } catch ExecutorError.cancelled {
        printError("wgpm: interrupted while waiting; queued jobs stay queued.")
        throw ExitCode(130)
    }
    let parallel = max(1, config.parallelDownloads)
    let limiter = config.bandwidthLimitKB > 0 ? BandwidthLimiter(bytesPerSecond: Int64(config.bandwidthLimitKB) * 1000) : nil
    var downloader = Downloader(hub: reconciler.hub, transfer: CurlDownload(limiter: limiter),
                                sleeper: reconciler.context.sleeper, confinement: confinement)
    downloader.connectionsPerFile = config.connectionsPerFile
    downloader.singleStreamAbove = Double(config.singleStreamAboveMBs) * 1e6
    downloader.pool = ConnectionPool(extra: config.maxConnections - parallel)
    let pending = try reconciler.state.jobs().filter { $0.state == .pending || $0.state == .running }
    let board = ProgressBoard(jobs: pending.map { ($0.id, $0.bytesTotal) })
    let printer = ProgressPrinter(board: board, terminal: isatty(STDERR_FILENO) == 1 && ProcessInfo.processInfo.environment["CI"] == nil)
    let reported = FirstTimes()
    let runner = QueueRunner(
        state: reconciler.state, downloader: downloader, workers: parallel,
        minFreeBytes: config.minFreeBytes, fileSystem: reconciler.context.fileSystem, confinement: confinement,
        clock: reconciler.context.clock,
        notice: { printer.line(wrappedForStandardError("wgpm: \($0)")) },
        onJobEnd: { path, error in
            // The reasons come once, at the end, grouped; a worker that follows the queue has
            // no end, so it says each new reason as it comes.
            guard let error else { return printer.line("  done    \(path)") }
            guard follow else { return printer.line("  failed  \(path)") }
            printer.line(reported.first(error) ? wrappedForStandardError("  failed  \(path): \(withoutPath(path, error))")
                         : "  failed  \(path) (the same reason as above)")
        })
    printer.start()
    let summary = try runner.run(cancel: interruption, board: board, follow: follow)
    printer.stop()
    if summary.interrupted {
        printError("wgpm: \(ExecutorError.cancelled)")
        throw ExitCode(130)
    }
    if summary.completed.isEmpty && summary.failed.isEmpty && !follow && ownJobs == nil {
        print("The queue is empty: nothing to do. 'wgpm apply' plans and enqueues; 'wgpm queue status' shows past jobs.")
        return true
    }
    let kept = summary.bytesKeptForRetry > 0 ? " (\(formatBytes(summary.bytesKeptForRetry)) more in the partial files of failed ones, kept for the retry)" : ""
    print("Applied: \(summary.completed.count) done, \(summary.failed.count) failed, \(formatBytes(summary.bytesDownloaded)) downloaded\(kept).")
    for line in failureLines(summary.failed) { printError(line) }
    return summary.failed.isEmpty
}

/// The errors at the end of a run, one per distinct reason in the order they first came: a
/// host that is down is named once, with the files it held back, however many there are.
func failureLines(_ failed: [(path: String, error: String)]) -> [String] {
    var order: [String] = []
    var paths: [String: [String]] = [:]
    for (path, error) in failed {
        if paths[error] == nil { order.append(error) }
        paths[error, default: []].append(path)
    }
    return order.flatMap { error -> [String] in
        let files = paths[error] ?? []
        guard files.count > 1 else { return files.map { wrappedForStandardError("wgpm: error: \(naming($0, error))") } }
        return [wrappedForStandardError("wgpm: error: \(error)"), "  (the reason for \(files.count) files:)"] + files.sorted().map { "    \($0)" }
    }
}

/// Says whether a value is seen for the first time (shared by the queue's workers).
final class FirstTimes: Sendable {
    private let seen = Mutex<Set<String>>([])
    func first(_ value: String) -> Bool { seen.withLock { $0.insert(value).inserted } }
}

/// "path: error", unless the error already starts with the path.
func naming(_ path: String, _ error: String) -> String {
    error.hasPrefix(path + ":") || error.hasPrefix("cannot write \(path)") ? error : "\(path): \(error)"
}

/// Follows the jobs `ids` while another process runs the queue, printing each as it ends.
/// Returns whether all succeeded once all have ended, or nil when the queue lock became free
/// first (the other runner stopped): then this process holds it and runs them itself.
func waitForJobs(_ ids: [String], locks: RunLocks, state: StateDatabase, timeout: Double?) throws -> Bool? {
    let wanted = Set(ids)
    printError("wgpm: another wgpm (\(locks.queue.holderDescription() ?? "unknown")) is running the queue; it carries out this plan's \(wanted.count) job\(wanted.count == 1 ? "" : "s") — waiting for them…")
    let deadline = timeout.map { Date().addingTimeInterval($0) }
    var reported: Set<String> = []
    while true {
        let jobs = try state.jobs().filter { wanted.contains($0.id) }
        for job in jobs where (job.state == .done || job.state == .failed) && reported.insert(job.id).inserted {
            printError(job.state == .done ? "  done    \(job.path)" : "  failed  \(job.path)")  // reasons follow at the end
        }
        let failed = jobs.filter { $0.state == .failed }
        if jobs.allSatisfy({ $0.state == .done || $0.state == .failed }) {
            print("Applied: \(jobs.count - failed.count) done, \(failed.count) failed (by the running wgpm).")
            for line in failureLines(failed.map { ($0.path, $0.lastError ?? "unknown error") }) { printError(line) }
            return failed.isEmpty
        }
        if try locks.tryQueue() { return nil }
        if interruption.isSet {
            printError("wgpm: stopped waiting; the jobs stay queued for the running wgpm.")
            throw ExitCode(130)
        }
        if let deadline, Date() >= deadline {
            throw ProcessLock.LockError.timeout(path: locks.queue.path, what: locks.queue.what, holder: locks.queue.holderDescription())
        }
        Thread.sleep(forTimeInterval: 0.3)
    }
}

/// Progress on stderr: a redrawn bar on a terminal, a plain line every few seconds elsewhere.
final class ProgressPrinter: Sendable {
    let board: ProgressBoard
    let terminal: Bool
    /// Whether the drawing thread runs, and how many bar lines are on screen now.
    private let screen = Mutex<(running: Bool, drawn: Int)>((false, 0))

    init(board: ProgressBoard, terminal: Bool) {
        self.board = board
        self.terminal = terminal
    }

    func start() {
        screen.withLock { $0.running = true }
        let t = Thread { [self] in
            var ticks = 0
            while screen.withLock({ $0.running }) {
                Thread.sleep(forTimeInterval: 0.25)
                ticks += 1
                if terminal { draw() } else if ticks % 20 == 0 { plain() }
            }
        }
        t.start()
    }

    func stop() {
        screen.withLock { state in
            state.running = false
            if terminal { Self.clear(&state.drawn) }
        }
    }

    /// A line that scrolls above the bars.
    func line(_ text: String) {
        screen.withLock { state in
            if terminal { Self.clear(&state.drawn) }
            writeStandardError(text + "\n")
        }
    }

    private static func clear(_ drawn: inout Int) {
        if drawn > 0 { writeStandardError(String(repeating: "\u{1B}[1A\u{1B}[2K", count: drawn)) }
        drawn = 0
    }

    private func summaryText(_ s: ProgressBoard.Snapshot) -> String {
        let left = s.totalBytes - s.failedBytes - s.doneBytes
        let eta = s.speed > 0 && left > 0 ? " ETA \(formatDuration(Double(left) / s.speed))" : ""
        let failed = s.failedFiles > 0 ? " (\(s.failedFiles) failed)" : ""
        return "\(s.doneFiles)/\(s.totalFiles) files\(failed), \(formatBytes(s.doneBytes)) / \(formatBytes(s.totalBytes)), \(formatBytes(Int64(s.speed)))/s\(eta)"
    }

    private func draw() {
        let s = board.snapshot()
        // Every line fits the terminal: a line that wraps is not erased by the redraw and
        // leaves a stale copy behind each time (long paths lose their middle instead).
        let columns = terminalColumns() - 1
        var lines: [String] = []
        for a in s.active.prefix(8) {
            let fraction = a.total.map { $0 > 0 ? Double(a.done) / Double($0) : 1 } ?? 0
            let width = 24
            let filled = Int(fraction * Double(width))
            let bar = String(repeating: "#", count: filled) + String(repeating: "-", count: width - filled)
            let head = "  [\(bar)] \(String(format: "%3.0f", fraction * 100))% \(formatBytes(Int64(a.speed)))/s  "
            lines.append(head + truncatingMiddle(a.path, to: max(10, columns - head.count)))
        }
        let total = s.totalBytes > 0 ? Double(s.doneBytes) / Double(s.totalBytes) : 0
        lines.append(String(("  total \(String(format: "%3.0f", total * 100))%  " + summaryText(s)).prefix(columns)))
        screen.withLock { state in
            guard state.running else { return }  // stopped while this frame was made: the summary follows
            Self.clear(&state.drawn)
            writeStandardError(lines.joined(separator: "\n") + "\n")
            state.drawn = lines.count
        }
    }

    private func plain() {
        let text = "progress: " + summaryText(board.snapshot())
        screen.withLock { state in
            if state.running { writeStandardError(text + "\n") }
        }
    }
}

/// The width of the terminal on stderr, 80 when it does not say.
func terminalColumns() -> Int { columns(of: STDERR_FILENO) ?? 80 }

/// The width of the terminal on `fd`; nil when it is not one.
func columns(of fd: Int32) -> Int? {
    var size = winsize()
    return ioctl(fd, UInt(TIOCGWINSZ), &size) == 0 && size.ws_col > 0 ? Int(size.ws_col) : nil
}

/// `text` cut to `width` characters by dropping its middle ("ckpts/wan2.1_te…int8.safetensors"):
/// both the folder and the file name stay readable.
func truncatingMiddle(_ text: String, to width: Int) -> String {
    guard text.count > width, width > 3 else { return text }
    let head = (width - 1) / 2
    return String(text.prefix(head)) + "…" + String(text.suffix(width - 1 - head))
}
