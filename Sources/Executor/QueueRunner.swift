import Foundation
import HubClient
import Inventory
import State
#if canImport(Glibc)
import Glibc
#endif

/// Throws `notEnoughSpace` when the bytes the downloads among `specs` still need (less what
/// their partial files already hold) do not fit on a filesystem with `reserve` bytes to spare.
public func checkSpace(for specs: [JobSpec], fileSystem: FileSystem, reserve: Int64) throws {
    var need: [String: (mount: String, free: Int64, bytes: Int64)] = [:]
    for spec in specs where spec.kind == .download {
        guard let size = spec.size else { continue }
        let dir = spec.partialDirectory ?? (spec.target as NSString).deletingLastPathComponent
        guard let fs = fileSystem.filesystem(of: dir) else { continue }
        let already = fileSystem.stat(dir + "/" + Downloader.partialName(spec))?.size ?? 0
        need[fs.id, default: (fs.mountPoint, fs.freeBytes, 0)].bytes += max(0, size - already)
    }
    for (_, n) in need.sorted(by: { $0.key < $1.key }) where n.bytes > 0 && n.free - n.bytes < reserve {
        throw ExecutorError.notEnoughSpace(mountPoint: n.mount, needed: n.bytes, free: n.free, reserve: reserve)
    }
}

/// The check apply makes before it enqueues `jobs`: they and the jobs already waiting in
/// `state` must fit together, so a plan that cannot fit leaves no jobs behind for a worker.
public func checkSpace(enqueuing jobs: [JobSpec], into state: StateDatabase, fileSystem: FileSystem, reserve: Int64) throws {
    let waiting = try state.jobs().filter { $0.state == .pending || $0.state == .running }.compactMap { try? JobSpec.decode($0.spec) }
    let known = Set(waiting.map(\.id))
    try checkSpace(for: waiting + jobs.filter { !known.contains($0.id) }, fileSystem: fileSystem, reserve: reserve)
}

/// What a run of the queue did.
public struct RunSummary: Sendable {
    public var completed: [String] = []
    public var failed: [(path: String, error: String)] = []
    public var bytesDownloaded: Int64 = 0
    public var interrupted = false
}

/// Live progress of the jobs in flight, shared by workers and the reporter.
public final class ProgressBoard: @unchecked Sendable {
    struct Entry { var path: String; var done: Int64; var total: Int64?; var startDone: Int64; var started: Date }
    private let lock = NSLock()
    private var entries: [String: Entry] = [:]
    private var finishedBytes: Int64 = 0
    private var finishedFiles = 0
    private var totalBytes: Int64
    private var totalFiles: Int
    /// The jobs counted in the totals.
    private var counted: Set<String>
    let started = Date()

    /// Totals from the jobs waiting now; a job that begins later (enqueued while a worker
    /// follows the queue) is added to them, so the total line never passes 100 %.
    public init(jobs: [(id: String, bytes: Int64?)]) {
        totalBytes = jobs.reduce(0) { $0 + ($1.bytes ?? 0) }
        totalFiles = jobs.count
        counted = Set(jobs.map(\.id))
    }

    func begin(_ id: String, path: String, total: Int64?) {
        lock.lock()
        entries[id] = Entry(path: path, done: 0, total: total, startDone: -1, started: Date())
        if counted.insert(id).inserted {
            totalBytes += total ?? 0
            totalFiles += 1
        }
        lock.unlock()
    }

    func update(_ id: String, done: Int64) {
        lock.lock()
        if var e = entries[id] {
            if e.startDone < 0 { e.startDone = done }
            e.done = done
            entries[id] = e
        }
        lock.unlock()
    }

    func end(_ id: String, bytes: Int64) {
        lock.lock()
        entries[id] = nil
        finishedBytes += bytes
        finishedFiles += 1
        lock.unlock()
    }

    public struct Snapshot: Sendable {
        public var active: [(id: String, path: String, done: Int64, total: Int64?, speed: Double)]
        public var doneBytes: Int64
        public var doneFiles: Int
        public var speed: Double
        public var totalBytes: Int64
        public var totalFiles: Int
    }

    public func snapshot() -> Snapshot {
        lock.lock(); defer { lock.unlock() }
        let now = Date()
        var active: [(String, String, Int64, Int64?, Double)] = []
        var transferred: Int64 = 0
        for (id, e) in entries.sorted(by: { $0.value.path < $1.value.path }) {
            let moved = max(0, e.done - max(e.startDone, 0))
            transferred += moved
            active.append((id, e.path, e.done, e.total, Double(moved) / max(now.timeIntervalSince(e.started), 0.001)))
        }
        let done = finishedBytes + entries.values.reduce(0) { $0 + $1.done }
        let elapsed = max(now.timeIntervalSince(started), 0.001)
        return Snapshot(active: active, doneBytes: done, doneFiles: finishedFiles,
                        speed: Double(finishedBytes + transferred) / elapsed, totalBytes: totalBytes, totalFiles: totalFiles)
    }
}

/// Runs queued jobs with `workers` threads until the queue is empty (or forever with `follow`).
public struct QueueRunner: Sendable {
    public var state: StateDatabase
    public var downloader: Downloader
    public var linker: Linker
    public var workers: Int
    public var minFreeBytes: Int64
    public var fileSystem: FileSystem
    public var clock: @Sendable () -> Double
    public var notice: @Sendable (String) -> Void
    /// Called when a job ends: (path, nil) on success, (path, error) on failure.
    public var onJobEnd: @Sendable (String, String?) -> Void

    public init(state: StateDatabase, downloader: Downloader, linker: Linker = Linker(), workers: Int, minFreeBytes: Int64,
                fileSystem: FileSystem = LocalFileSystem(), clock: @escaping @Sendable () -> Double = { Date().timeIntervalSince1970 },
                notice: @escaping @Sendable (String) -> Void, onJobEnd: @escaping @Sendable (String, String?) -> Void) {
        self.state = state
        self.downloader = downloader
        self.linker = linker
        self.workers = max(1, workers)
        self.minFreeBytes = minFreeBytes
        self.fileSystem = fileSystem
        self.clock = clock
        self.notice = notice
        self.onJobEnd = onJobEnd
    }

    /// Bytes still to download per filesystem must fit with `min_free_gb` to spare; checked
    /// before any transfer starts.
    public func checkFreeSpace() throws {
        let waiting = try state.jobs().filter { $0.state == .pending || $0.state == .running }
        try checkSpace(for: waiting.compactMap { try? JobSpec.decode($0.spec) }, fileSystem: fileSystem, reserve: minFreeBytes)
    }

    public func run(cancel: CancelFlag, board: ProgressBoard?, follow: Bool = false) throws -> RunSummary {
        try state.recoverAbandonedJobs(at: clock())
        try checkFreeSpace()
        // Only what that check counted; a failed job retried later is checked when it returns.
        let gate = SpaceGate(checked: Set(try state.jobs().filter { $0.state == .pending || $0.state == .running }.map(\.id)))
        let summary = SummaryBox()
        let group = DispatchGroup()
        for _ in 0..<workers {
            group.enter()
            let thread = Thread { [self] in
                defer { group.leave() }
                workLoop(cancel: cancel, board: board, follow: follow, gate: gate, summary: summary)
            }
            thread.stackSize = 1 << 20
            thread.start()
        }
        group.wait()
        var result = summary.value
        result.interrupted = cancel.isSet
        return result
    }

    /// Jobs enqueued while the queue runs (`apply --enqueue-only` beside `worker --follow`, or a
    /// second apply) get the same free-space check as the ones there at the start, before any
    /// of them is claimed. New downloads that do not fit fail with the reason; `queue retry`
    /// brings them back once space is freed.
    private func admitNewJobs(_ gate: SpaceGate, summary: SummaryBox) {
        gate.lock.withLock {
            guard let jobs = try? state.jobs() else { return }
            let new = jobs.filter { $0.state == .pending && !gate.checked.contains($0.id) }
            guard !new.isEmpty else { return }
            do {
                try checkFreeSpace()
                gate.checked.formUnion(new.map(\.id))
            } catch {
                // Not marked as checked: after `queue retry` they are checked again.
                let message = "\(error)"
                notice(message)
                for job in new {
                    guard (try? JobSpec.decode(job.spec))?.kind == .download else { gate.checked.insert(job.id); continue }
                    try? state.failJob(job.id, error: message, at: clock())
                    summary.fail(job.path, message)
                    onJobEnd(job.path, message)
                }
            }
        }
    }

    private func workLoop(cancel: CancelFlag, board: ProgressBoard?, follow: Bool, gate: SpaceGate, summary: SummaryBox) {
        let pid = getpid()
        while !cancel.isSet {
            admitNewJobs(gate, summary: summary)
            let job: JobRecord?
            do { job = try state.claimNextJob(pid: pid, at: clock()) } catch {
                notice("queue: \(error)")
                return
            }
            guard let job else {
                if follow { Thread.sleep(forTimeInterval: 1); continue }
                return
            }
            execute(job, cancel: cancel, board: board, summary: summary)
        }
    }

    private func execute(_ job: JobRecord, cancel: CancelFlag, board: ProgressBoard?, summary: SummaryBox) {
        let spec: JobSpec
        do { spec = try JobSpec.decode(job.spec) } catch {
            try? state.failJob(job.id, error: "unreadable job description", at: clock())
            return
        }
        board?.begin(job.id, path: spec.path, total: spec.size)
        let lastWrite = LastWrite()
        let progress: @Sendable (Int64) -> Void = { [state, clock] done in
            board?.update(job.id, done: done)
            if lastWrite.due(clock()) { try? state.updateProgress(job.id, bytesDone: done, at: clock()) }
        }
        do {
            var bytes: Int64 = 0
            switch spec.kind {
            case .download:
                bytes = try downloader.run(spec, cancel: cancel, progress: progress, notice: notice)
                summary.add(downloaded: bytes)
            case .link:
                try linker.run(spec)
            case .remove:
                guard try state.managedPaths().contains(spec.path) else { throw ExecutorError.notManaged(path: spec.path) }
                if unlink(spec.target) != 0 && errno != ENOENT {
                    throw ExecutorError.cannotWrite(path: spec.path, reason: String(cString: strerror(errno)))
                }
                try state.forgetManaged(spec.path)
            }
            if spec.kind != .remove { try state.recordManaged(spec.path, at: clock()) }
            try state.finishJob(job.id, bytes: bytes, at: clock())
            board?.end(job.id, bytes: bytes)
            summary.complete(spec.path)
            onJobEnd(spec.path, nil)
        } catch ExecutorError.cancelled {
            try? state.releaseJob(job.id, note: "interrupted", at: clock())
            board?.end(job.id, bytes: 0)
        } catch {
            let message = "\(error)"
            try? state.failJob(job.id, error: message, at: clock())
            board?.end(job.id, bytes: 0)
            summary.fail(spec.path, message)
            onJobEnd(spec.path, message)
        }
    }
}

/// Rate-limits progress writes to the database to about one a second per job.
final class LastWrite: @unchecked Sendable {
    private let lock = NSLock()
    private var last: Double = 0
    func due(_ now: Double) -> Bool {
        lock.lock(); defer { lock.unlock() }
        if now - last >= 1 { last = now; return true }
        return false
    }
}

/// The jobs whose space has been checked (guarded by `lock`).
final class SpaceGate: @unchecked Sendable {
    let lock = NSLock()
    var checked: Set<String>
    init(checked: Set<String>) { self.checked = checked }
}

final class SummaryBox: @unchecked Sendable {
    private let lock = NSLock()
    private var summary = RunSummary()
    var value: RunSummary { lock.lock(); defer { lock.unlock() }; return summary }
    func complete(_ path: String) { lock.lock(); summary.completed.append(path); lock.unlock() }
    func fail(_ path: String, _ error: String) { lock.lock(); summary.failed.append((path, error)); lock.unlock() }
    func add(downloaded: Int64) { lock.lock(); summary.bytesDownloaded += downloaded; lock.unlock() }
}
