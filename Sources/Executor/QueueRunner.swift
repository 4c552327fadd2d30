import Foundation
import HubClient
import Inventory
import Planner
import State
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Throws `notEnoughSpace` when the bytes the downloads among `specs` still need (less what
/// their partial files already hold) do not fit on a filesystem with `reserve` bytes to spare.
/// Each download counts on the filesystem that will hold its target (a subfolder may be
/// another mount), where its partial file lives too.
public func checkSpace(for specs: [JobSpec], fileSystem: FileSystem, reserve: Int64, confinement: Confinement? = nil) throws {
    var need: [String: (mount: String, free: Int64, bytes: Int64)] = [:]
    for spec in specs where spec.kind == .download {
        guard let size = spec.size else { continue }
        guard let fs = fileSystem.filesystem(of: (spec.target as NSString).deletingLastPathComponent) else { continue }
        let already = partialBytes(of: spec, fileSystem: fileSystem, confinement: confinement)
        let entry = need[fs.id, default: (fs.mountPoint, fs.freeBytes, 0)]
        need[fs.id] = (entry.mount, entry.free, saturatingSum(entry.bytes, max(0, size - already)))
    }
    for (_, n) in need.sorted(by: { $0.key < $1.key }) where n.bytes > 0 && !FilesystemUsage.fits(free: n.free, download: n.bytes, reserve: reserve) {
        throw ExecutorError.notEnoughSpace(mountPoint: n.mount, needed: n.bytes, free: n.free, reserve: reserve)
    }
}

/// The bytes a download's partial file already holds (by its segment map when it has one: a
/// segmented partial is sparse), 0 when there is none. What a rerun will not fetch again.
public func partialBytes(of spec: JobSpec, fileSystem: FileSystem, confinement: Confinement? = nil) -> Int64 {
    guard spec.kind == .download,
          let folder = try? (confinement ?? .inferred(from: spec)).partialFolder(for: spec, fileSystem: fileSystem) else { return 0 }
    let name = Downloader.partialName(spec)
    let held = SegmentedDownload.bytesHeld(folder: folder, name: name) ?? fileSystem.stat(folder + "/" + name)?.size ?? 0
    return min(held, spec.size ?? held)
}

/// The check apply makes before it enqueues `jobs`: they and the jobs already waiting in
/// `state` must fit together, so a plan that cannot fit leaves no jobs behind for a worker.
public func checkSpace(enqueuing jobs: [JobSpec], into state: StateDatabase, fileSystem: FileSystem, reserve: Int64,
                       confinement: Confinement? = nil) throws {
    let waiting = try state.jobs().filter { $0.state == .pending || $0.state == .running }.compactMap { try? JobSpec.decode($0.spec) }
    let known = Set(waiting.map(\.id))
    try checkSpace(for: waiting + jobs.filter { !known.contains($0.id) }, fileSystem: fileSystem, reserve: reserve,
                   confinement: confinement)
}

/// What a run of the queue did.
public struct RunSummary: Sendable {
    public var completed: [String] = []
    public var failed: [(path: String, error: String)] = []
    public var bytesDownloaded: Int64 = 0
    /// What the partial files of failed downloads hold: fetched, kept, and not fetched again
    /// by the retry.
    public var bytesKeptForRetry: Int64 = 0
    public var interrupted = false
}

/// Live progress of the jobs in flight, shared by workers and the reporter.
public final class ProgressBoard: Sendable {
    struct Entry { var path: String; var done: Int64; var total: Int64?; var startDone: Int64; var started: Date }
    struct Totals {
        var entries: [String: Entry] = [:]
        /// The sizes of the files placed.
        var finishedBytes: Int64 = 0
        /// What this run fetched for them (the speed).
        var fetchedBytes: Int64 = 0
        var finishedFiles = 0
        /// Jobs that ended without their file (failed, or interrupted): not progress, and what
        /// they would have brought is not waited for either.
        var failedFiles = 0
        var failedBytes: Int64 = 0
        var totalBytes: Int64
        var totalFiles: Int
        /// The jobs counted in the totals.
        var counted: Set<String>
    }
    private let totals: Mutex<Totals>
    let started = Date()

    /// Totals from the jobs waiting now; a job that begins later (enqueued while a worker
    /// follows the queue) is added to them, so the total line never passes 100 %.
    public init(jobs: [(id: String, bytes: Int64?)]) {
        totals = Mutex(Totals(totalBytes: jobs.reduce(0) { saturatingSum($0, $1.bytes ?? 0) }, totalFiles: jobs.count,
                              counted: Set(jobs.map(\.id))))
    }

    func begin(_ id: String, path: String, total: Int64?) {
        totals.withLock { t in
            t.entries[id] = Entry(path: path, done: 0, total: total, startDone: -1, started: Date())
            if t.counted.insert(id).inserted {
                t.totalBytes = saturatingSum(t.totalBytes, total ?? 0)
                t.totalFiles += 1
            }
        }
    }

    func update(_ id: String, done: Int64) {
        totals.withLock { t in
            guard var e = t.entries[id] else { return }
            if e.startDone < 0 { e.startDone = done }
            e.done = done
            t.entries[id] = e
        }
    }

    /// A job that placed its file, having fetched `bytes` for it: the whole file counts as done
    /// (what a partial held already, or a link's size, too); only `bytes` count for the speed.
    func end(_ id: String, bytes: Int64) {
        totals.withLock { t in
            let entry = t.entries.removeValue(forKey: id)
            t.finishedBytes = saturatingSum(t.finishedBytes, entry?.total ?? max(entry?.done ?? 0, bytes))
            t.fetchedBytes = saturatingSum(t.fetchedBytes, bytes)
            t.finishedFiles += 1
        }
    }

    /// A job that ended without its file: its bytes leave the done count (they were thrown
    /// away) and the bytes still to come.
    func fail(_ id: String) {
        totals.withLock { t in
            let entry = t.entries.removeValue(forKey: id)
            t.failedFiles += 1
            t.failedBytes = saturatingSum(t.failedBytes, entry?.total ?? 0)
        }
    }

    public struct Snapshot: Sendable {
        public var active: [(id: String, path: String, done: Int64, total: Int64?, speed: Double)]
        public var doneBytes: Int64
        public var doneFiles: Int
        public var failedFiles: Int
        /// What the jobs that failed would have brought: not to be waited for.
        public var failedBytes: Int64
        public var speed: Double
        public var totalBytes: Int64
        public var totalFiles: Int
    }

    public func snapshot() -> Snapshot {
        totals.withLock { t in
            let now = Date()
            var active: [(String, String, Int64, Int64?, Double)] = []
            var transferred: Int64 = 0
            for (id, e) in t.entries.sorted(by: { $0.value.path < $1.value.path }) {
                let moved = max(0, e.done - max(e.startDone, 0))
                transferred += moved
                active.append((id, e.path, e.done, e.total, Double(moved) / max(now.timeIntervalSince(e.started), 0.001)))
            }
            let done = t.finishedBytes + t.entries.values.reduce(0) { $0 + $1.done }
            let elapsed = max(now.timeIntervalSince(started), 0.001)
            return Snapshot(active: active, doneBytes: done, doneFiles: t.finishedFiles,
                            failedFiles: t.failedFiles, failedBytes: t.failedBytes, speed: Double(t.fetchedBytes + transferred) / elapsed, totalBytes: t.totalBytes, totalFiles: t.totalFiles)
        }
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
    /// Where jobs may write; nil: inferred from each job's own path and target.
    public var confinement: Confinement?
    public var clock: @Sendable () -> Double
    public var notice: @Sendable (String) -> Void
    /// Called when a job ends: (path, nil) on success, (path, error) on failure.
    public var onJobEnd: @Sendable (String, String?) -> Void

    public init(state: StateDatabase, downloader: Downloader, linker: Linker? = nil, workers: Int, minFreeBytes: Int64,
                fileSystem: FileSystem = LocalFileSystem(), confinement: Confinement? = nil,
                clock: @escaping @Sendable () -> Double = { Date().timeIntervalSince1970 },
                notice: @escaping @Sendable (String) -> Void, onJobEnd: @escaping @Sendable (String, String?) -> Void) {
        self.state = state
        self.downloader = downloader
        self.downloader.confinement = downloader.confinement ?? confinement
        self.linker = linker ?? Linker(fileSystem: fileSystem, state: state, confinement: confinement)
        self.workers = max(1, workers)
        self.minFreeBytes = minFreeBytes
        self.fileSystem = fileSystem
        self.confinement = confinement
        self.clock = clock
        self.notice = notice
        self.onJobEnd = onJobEnd
    }

    /// Bytes still to download per filesystem must fit with `min_free_gb` to spare; checked
    /// before any transfer starts.
    public func checkFreeSpace() throws {
        let waiting = try state.jobs().filter { $0.state == .pending || $0.state == .running }
        try checkSpace(for: waiting.compactMap { try? JobSpec.decode($0.spec) }, fileSystem: fileSystem,
                       reserve: minFreeBytes, confinement: confinement)
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

    /// The admission rule the claim applies inside its transaction: jobs enqueued while the
    /// queue runs (`apply --enqueue-only` beside `worker --follow`, a second apply, a retry)
    /// get the same free-space check as the ones there at the start, before any of them is
    /// claimed. New downloads that do not fit are refused with the reason; `queue retry`
    /// brings them back once space is freed (they are checked again then).
    private func admit(_ waiting: [JobRecord], gate: SpaceGate) -> [String: String] {
        let new = waiting.filter { $0.state == .pending && !gate.contains($0.id) }
        guard !new.isEmpty else { return [:] }
        let specs = waiting.compactMap { try? JobSpec.decode($0.spec) }
        do {
            try checkSpace(for: specs, fileSystem: fileSystem, reserve: minFreeBytes, confinement: confinement)
            gate.insert(new.map(\.id))
            return [:]
        } catch {
            let downloads = Set(specs.filter { $0.kind == .download }.map(\.id))
            gate.insert(new.filter { !downloads.contains($0.id) }.map(\.id))
            return Dictionary(uniqueKeysWithValues: new.filter { downloads.contains($0.id) }.map { ($0.id, "\(error)") })
        }
    }

    private func workLoop(cancel: CancelFlag, board: ProgressBoard?, follow: Bool, gate: SpaceGate, summary: SummaryBox) {
        let pid = getpid()
        while !cancel.isSet {
            let claim: StateDatabase.Claim
            do { claim = try state.claimNextJob(pid: pid, at: clock(), admit: { admit($0, gate: gate) }) } catch {
                notice("queue: \(error)")
                return
            }
            if let reason = claim.refused.first?.reason { notice(reason) }
            for (job, reason) in claim.refused {
                summary.fail(job.path, reason)
                onJobEnd(job.path, reason)
            }
            guard let job = claim.job else {
                if follow { Thread.sleep(forTimeInterval: 1); continue }
                return
            }
            execute(job, cancel: cancel, board: board, summary: summary)
        }
    }

    private func execute(_ job: JobRecord, cancel: CancelFlag, board: ProgressBoard?, summary: SummaryBox) {
        let spec: JobSpec
        do { spec = try JobSpec.decode(job.spec) } catch {
            let message = "\(printable(job.path)): the queued job cannot be read; run 'wgpm queue clear --failed' and plan again"
            try? state.failJob(job.id, error: message, at: clock())
            summary.fail(job.path, message)
            onJobEnd(job.path, message)
            return
        }
        board?.begin(job.id, path: spec.path, total: spec.size)
        let lastWrite = LastWrite()
        let progress: @Sendable (Int64) -> Void = { [state, clock] done in
            board?.update(job.id, done: done)
            if lastWrite.due(clock()) { try? state.updateProgress(job.id, bytesDone: done, at: clock()) }
        }
        do {
            try (confinement ?? .inferred(from: spec)).check(spec)
            var bytes: Int64 = 0
            switch spec.kind {
            case .download where try inPlace(spec):
                notice("\(spec.path): already in place (a plan made earlier ran meanwhile); not downloaded again")
            case .download:
                bytes = try downloader.run(spec, cancel: cancel, progress: progress, notice: notice)
                summary.add(downloaded: bytes)
            case .link where try inPlace(spec):
                break
            case .link:
                do {
                    try linker.run(spec)
                } catch ExecutorError.badContent(let path, let source, let reason) where spec.url != nil {
                    // The source was recorded as bad; the file is still wanted, so fetch it.
                    notice("\(path): \(source) does not hold the expected content (\(reason)); downloading instead")
                    var download = spec
                    download.kind = .download
                    bytes = try downloader.run(download, cancel: cancel, progress: progress, notice: notice)
                    summary.add(downloaded: bytes)
                }
            case .remove:
                guard try state.managedPaths().contains(spec.path) else { throw ExecutorError.notManaged(path: spec.path) }
                try remove(spec)
                try state.forgetManaged(spec.path)
            }
            if spec.kind != .remove { try state.recordManaged(spec.path, at: clock()) }
            try state.finishJob(job.id, bytes: bytes, at: clock())
            board?.end(job.id, bytes: bytes)
            summary.complete(spec.path)
            onJobEnd(spec.path, nil)
        } catch ExecutorError.cancelled {
            try? state.releaseJob(job.id, note: "interrupted", at: clock())
            board?.fail(job.id)
        } catch {
            let message = "\(error)"
            try? state.failJob(job.id, error: message, at: clock())
            board?.fail(job.id)
            summary.add(kept: partialBytes(of: spec, fileSystem: fileSystem, confinement: confinement))
            summary.fail(spec.path, message)
            onJobEnd(spec.path, message)
        }
    }

    /// Unlinks the target's name (never what a symlink there points at) inside its folder as
    /// opened by the confined walk; a folder or target already gone is nothing to remove.
    func remove(_ spec: JobSpec) throws {
        let parent = (spec.target as NSString).deletingLastPathComponent
        guard fileSystem.lstat(parent) != nil else { return }
        let folder = try (confinement ?? .inferred(from: spec)).openFolder(parent, for: spec.path, create: false)
        defer { close(folder) }
        if unlinkat(folder, (spec.target as NSString).lastPathComponent, 0) != 0 && errno != ENOENT {
            throw ExecutorError.posix(path: spec.path, code: errno, doing: "removing it")
        }
    }

    /// True when the target already holds the job's content, checked by hash through the
    /// hash cache: a stale plan, or the same plan applied twice, must not fetch a file again.
    /// Content without a known hash is never taken as in place.
    func inPlace(_ spec: JobSpec) throws -> Bool {
        guard spec.sha256 != nil || spec.gitSHA1 != nil, let st = fileSystem.stat(spec.target), st.kind == .file else { return false }
        if let size = spec.size, st.size != size { return false }
        let wantSHA = spec.sha256 != nil
        guard let digests = try? cachedDigests(of: spec.target, st, sha256: wantSHA, gitSHA1: !wantSHA,
                                               state: state, fileSystem: fileSystem) else { return false }
        return wantSHA ? digests.sha256 == spec.sha256 : digests.gitSHA1 == spec.gitSHA1
    }
}

/// Rate-limits progress writes to the database to about one a second per job.
final class LastWrite: Sendable {
    private let last = Mutex<Double>(0)
    func due(_ now: Double) -> Bool {
        last.withLock { last in
            guard now - last >= 1 else { return false }
            last = now
            return true
        }
    }
}

/// The jobs whose space has been checked.
final class SpaceGate: Sendable {
    private let checked: Mutex<Set<String>>
    init(checked: Set<String>) { self.checked = Mutex(checked) }
    func contains(_ id: String) -> Bool { checked.withLock { $0.contains(id) } }
    func insert(_ ids: [String]) { checked.withLock { $0.formUnion(ids) } }
}

final class SummaryBox: Sendable {
    private let summary = Mutex(RunSummary())
    var value: RunSummary { summary.withLock { $0 } }
    func complete(_ path: String) { summary.withLock { $0.completed.append(path) } }
    func fail(_ path: String, _ error: String) { summary.withLock { $0.failed.append((path, error)) } }
    func add(downloaded: Int64) { summary.withLock { $0.bytesDownloaded += downloaded } }
    func add(kept: Int64) { summary.withLock { $0.bytesKeptForRetry += kept } }
}
