import Crypto
import Foundation
import HubClient
import Inventory
import Planner
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Connections beyond each download's first, shared by all downloads of a run: each running
/// download has one of its own (one per `parallel_downloads` slot), so together they never hold
/// more than `max_connections`, and none waits for a connection to start.
public final class ConnectionPool: Sendable {
    private let free: Mutex<Int>

    /// `extra`: `max_connections` less `parallel_downloads`.
    public init(extra: Int) { free = Mutex(max(0, extra)) }

    func tryTake() -> Bool {
        free.withLock { n in
            guard n > 0 else { return false }
            n -= 1
            return true
        }
    }

    func give() { free.withLock { $0 += 1 } }
}

/// How a segmented download ended, when it did not throw.
enum SegmentedResult {
    case placed(Int64)
    /// The caller fetches the file as one stream: the host ignored a range request, or (when
    /// `rangesIgnored` is false) one connection alone was fast.
    case singleStream(rangesIgnored: Bool)
}

/// One large file fetched as parallel range requests into its one partial file.
///
/// Workers (threads, each with its own libcurl handle kept across its requests) write their
/// assignments with `pwrite`; the calling thread hashes the written run from byte 0 as it grows,
/// reading it back from the page cache, so no second pass over the file follows the last byte
/// and memory stays a few buffers whatever the size. The segment map beside the partial is saved
/// every second after a flush, so `kill -9` keeps every range it names and the rerun fetches only
/// the holes. A host that answers a range with the whole file sends the caller back to one stream.
final class SegmentedDownload: Sendable {
    struct Shared {
        var schedule: SegmentSchedule
        var source: DownloadSource
        /// Bumped on every re-resolve: a worker whose link expired resolves again only when
        /// nobody did since it got its link, so one expiry means one resolve for all workers.
        var generation = 0
        /// A range reply was accepted: the host serves ranges, more workers may start.
        var rangesWork = false
        var alive = 0
        var fatal: (any Error)?
        var singleStream = false
        /// The first connection alone was fast: one stream, and the host was not at fault.
        var oneIsFast = false
        /// A worker used up its attempts: no new workers start; the rest finish what they can.
        var exhausted = false
        var lastReason = ""
        /// Whether a connection's backing off was said: once per download, not per connection.
        var backoffSaid = false
    }

    let spec: JobSpec
    let size: Int64
    let sha256: String
    let formatName: String
    let fd: Int32
    let folder: Int32
    let name: String
    let state: Mutex<Shared>
    /// Set to stop every worker's transfer (a fatal error elsewhere, or the job's cancel).
    let abort = CancelFlag()
    let wake = DispatchSemaphore(value: 0)
    let group = DispatchGroup()
    let downloader: Downloader
    let progress: @Sendable (Int64) -> Void
    let notice: @Sendable (String) -> Void

    static let minimumSplit: Int64 = 8 << 20

    /// How long the first connection is measured before more start; at the downloader's
    /// `singleStreamAbove` rate (default 100 MB/s) it carries the file alone. Why: file hosts
    /// that cap connections cap them at 40–65 MB/s (huggingface_hub#2658, textgen#2841), and
    /// more connections pay off only there; from an uncapped host (a local mirror, a LAN) one
    /// stream is as fast and sixteen only cost CPU — 0.40–0.73× curl on loopback on two cores.
    /// The measurement errs towards more connections: a slow start reads as a slow host.
    static let probeWindow = 0.05

    /// About eight pieces per connection, each 8–64 MiB: a request per piece costs a round trip
    /// (1–2 % at 40 MB/s and 30 ms for a 64 MiB piece), and the hash trails the written front
    /// by about a piece per connection, which is what is left to hash after the last byte.
    static func piece(size: Int64, connections: Int) -> Int64 {
        min(max(size / Int64(max(1, connections) * 8), 8 << 20), 64 << 20)
    }
    static let readBlock = 1 << 20
    /// Each worker's write buffer and libcurl's receive buffer: 32 workers (two files of 16
    /// connections) hold 12 MiB.
    static let writeBlock = 256 << 10
    static let receiveBlock = 128 << 10

    init(spec: JobSpec, size: Int64, sha256: String, folder: Int32, name: String, source: DownloadSource,
         downloader: Downloader, progress: @escaping @Sendable (Int64) -> Void, notice: @escaping @Sendable (String) -> Void) throws {
        self.spec = spec
        self.size = size
        self.sha256 = sha256
        self.formatName = (spec.path as NSString).lastPathComponent
        self.name = name
        self.downloader = downloader
        self.progress = progress
        self.notice = notice
        self.folder = dup(folder)
        let fd = openOwnFile(name, in: self.folder)
        guard fd >= 0 else {
            close(self.folder)
            if fd == -2 { throw ExecutorError.cannotWrite(path: spec.path, reason: "something keeps replacing this partial file with a link or special file; check who writes to that folder") }
            throw ExecutorError.posix(path: spec.path, code: errno, doing: "open")
        }
        self.fd = fd
        let written = Self.recover(fd: fd, folder: self.folder, name: name, size: size, sha256: sha256, formatName: formatName)
        state = Mutex(Shared(schedule: SegmentSchedule(size: size, written: written, minimumSplit: Self.minimumSplit,
                                                       piece: Self.piece(size: size, connections: downloader.connectionsPerFile)),
                             source: source))
    }

    deinit {
        close(fd)
        close(folder)
    }

    /// What an earlier run left: the map's ranges (cut at the file's length), or, without a map,
    /// the file as a plain prefix (a single-stream partial). Bytes that cannot start the file's
    /// format, a file longer than the content, or a map that is not for this content: nothing.
    static func recover(fd: Int32, folder: Int32, name: String, size: Int64, sha256: String, formatName: String) -> ByteRanges {
        var st = stat()
        guard fstat(fd, &st) == 0 else { return ByteRanges() }
        let length = Int64(st.st_size)
        var written: ByteRanges
        let mapName = SegmentMapFile.name(of: name)
        if let data = readOwnFile(mapName, in: folder, limit: 1 << 20) {
            if let map = try? JSONDecoder().decode(SegmentMapFile.self, from: data), let ranges = map.ranges(size: size, sha256: sha256) {
                written = ranges.clipped(to: length)
            } else {
                written = ByteRanges()  // a map we cannot trust says nothing about the bytes
                ftruncate(fd, 0)
            }
        } else {
            written = length > 0 && length <= size ? ByteRanges([0..<length]) : ByteRanges()
        }
        if length > size {
            ftruncate(fd, 0)
            written = ByteRanges()
        }
        if written.prefix > 0 {
            var head = [UInt8](repeating: 0, count: ContentFormat.prefixLength)
            let n = pread(fd, &head, head.count, 0)
            let whole = n > 0 && (n == head.count || Int64(n) == size)
            if !whole || ContentFormat.problem(prefix: head[0..<n], name: formatName) != nil {
                ftruncate(fd, 0)
                written = ByteRanges()
            }
        }
        return written
    }

    /// Runs the download with up to `connections` workers and verifies it; the bytes are then
    /// ready to be moved into place (the caller renames). Throws on failure or cancel.
    func run(connections: Int, pool: ConnectionPool?, cancel: CancelFlag) throws -> SegmentedResult {
        let hasher = PrefixHasher(fd: fd, block: Self.readBlock)
        var nextWorker = 1
        var lastSave = Date()
        // Only a fresh partial or one stream's prefix may go on as one stream: holes that an
        // earlier segmented run left would be dropped.
        let (startBytes, startPrefix) = state.withLock { ($0.schedule.writtenBytes, $0.schedule.prefix) }
        var probed = connections <= 1 || startBytes != startPrefix || downloader.singleStreamAbove <= 0
        var probe: (start: Date, bytes: Int64)?
        progress(startBytes)
        // The map exists before any byte lands past the run from byte 0: a partial without one
        // is read as a plain prefix, and a sparse file read so would count its holes as
        // written (the crash loop found this: killed before the first save, resumed, wrong hash).
        guard saveMap() else {
            throw ExecutorError.cannotWrite(path: spec.path, reason: "the segment map beside the partial file cannot be written; check that folder's space and permissions")
        }
        spawn(id: 0, pooled: false, pool: pool)
        while true {
            if cancel.isSet { abort.set() }
            // Hash what is written from the start, in bounded steps so events are not missed.
            let prefix = state.withLock { $0.schedule.prefix }
            var steps = 0
            do { steps = try hasher.advance(to: prefix, maxSteps: 16) } catch {
                fail(ExecutorError.posix(path: spec.path, code: error.code.rawValue, doing: "read back"))
            }
            let hashed = hasher.hashed
            let (alive, fatal, singleStream, complete, rangesWork, exhausted, work, written) = state.withLock {
                ($0.alive, $0.fatal, $0.singleStream, $0.schedule.isComplete, $0.rangesWork, $0.exhausted,
                 $0.schedule.hasWorkToHandOut, $0.schedule.writtenBytes)
            }
            var pause = 0.25
            if alive == 0 {
                // Nothing more will be written: stop once what is written is hashed.
                if abort.isSet || fatal != nil || singleStream || !complete || hashed == size || (steps == 0 && hashed >= prefix) { break }
            } else if rangesWork && !probed && fatal == nil && !abort.isSet {
                // The first connection's bytes arrive: measure it before starting others.
                let now = Date()
                if let p = probe, now.timeIntervalSince(p.start) >= Self.probeWindow {
                    probed = true
                    let rate = Double(written - p.bytes) / now.timeIntervalSince(p.start)
                    if rate >= downloader.singleStreamAbove {
                        notice("\(spec.path): one connection brings \(formatBytes(Int64(rate)))/s; no more are opened (single_stream_above_mbs)")
                        state.withLock { $0.singleStream = true; $0.oneIsFast = true }
                        abort.set()
                    }
                    continue
                }
                if probe == nil { probe = (now, written) }
                pause = max(0.001, Self.probeWindow - now.timeIntervalSince(probe!.start))
            } else if rangesWork && !exhausted && work && alive < connections && fatal == nil && !abort.isSet,
                      pool?.tryTake() == true {
                spawn(id: nextWorker, pooled: true, pool: pool)
                nextWorker += 1
                continue
            }
            if Date().timeIntervalSince(lastSave) >= 1 {
                saveMap()
                lastSave = Date()
            }
            if steps == 0 { _ = wake.wait(timeout: .now() + pause) }
        }
        group.wait()
        let end = state.withLock { $0 }
        if end.singleStream && !cancel.isSet && end.fatal == nil {
            // The one stream continues after the written run from byte 0; the rest is dropped.
            ftruncate(fd, off_t(end.schedule.prefix))
            unlinkat(folder, SegmentMapFile.name(of: name), 0)
            return .singleStream(rangesIgnored: !end.oneIsFast)
        }
        guard end.schedule.isComplete && hasher.hashed == size && end.fatal == nil && !cancel.isSet else {
            saveMap()
            if cancel.isSet { throw ExecutorError.cancelled }
            if let fatal = end.fatal { throw fatal }
            throw ExecutorError.gaveUp(path: spec.path, reason: end.lastReason.isEmpty ? "the download stopped"
                                       : "its connections failed \(downloader.maxAttempts) times each, the last: \(end.lastReason)")
        }
        let actual = hasher.finalize()
        if actual != sha256 {
            remove()
            throw ExecutorError.verificationFailed(path: spec.path, expected: sha256, actual: actual)
        }
        guard fsync(fd) == 0 else { throw ExecutorError.posix(path: spec.path, code: errno, doing: "flush") }
        return .placed(size - startBytes)  // what this run fetched, not what an earlier one did
    }

    /// Removes the partial and its map (a failed verification: never resumed).
    func remove() {
        unlinkat(folder, name, 0)
        unlinkat(folder, SegmentMapFile.name(of: name), 0)
    }

    /// Leaves a partial that a single stream can continue: the written run from byte 0 of an
    /// earlier segmented run is kept, the rest and the map are dropped. For the single-stream
    /// path, which reads the partial's length as what is written.
    static func reduceToPrefix(folder: Int32, name: String, size: Int64?, sha256: String?) {
        let mapName = SegmentMapFile.name(of: name)
        guard let data = readOwnFile(mapName, in: folder, limit: 1 << 20) else { return }
        var keep: Int64 = 0
        if let size, let sha256, let map = try? JSONDecoder().decode(SegmentMapFile.self, from: data),
           let ranges = map.ranges(size: size, sha256: sha256) {
            keep = ranges.prefix
        }
        let fd = openOwnFile(name, in: folder)
        if fd >= 0 {
            var st = stat()
            if fstat(fd, &st) == 0 && Int64(st.st_size) > keep { ftruncate(fd, off_t(keep)) }
            close(fd)
        }
        unlinkat(folder, mapName, 0)
    }

    /// The bytes a segmented partial holds by its map (its length is not what it holds: it is
    /// sparse); nil when it has no map.
    public static func bytesHeld(folder: String, name: String) -> Int64? {
        let dir = open(folder, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard dir >= 0 else { return nil }
        defer { close(dir) }
        guard let data = readOwnFile(SegmentMapFile.name(of: name), in: dir, limit: 1 << 20),
              let map = try? JSONDecoder().decode(SegmentMapFile.self, from: data) else { return nil }
        return map.ranges(size: map.size, sha256: map.sha256)?.total ?? 0
    }

    /// Flushes the partial, then records what is written. The snapshot is taken first: every
    /// range in it was written before the flush, so the saved map never names unflushed bytes.
    /// A failed save leaves the last map, which names less than is written: safe.
    @discardableResult
    func saveMap() -> Bool {
        let snapshot = state.withLock { $0.schedule.written }
        guard fdatasync(fd) == 0 else { return false }
        let map = SegmentMapFile(size: size, sha256: sha256, written: snapshot)
        guard let data = try? JSONEncoder().encode(map) else { return false }
        return writeOwnFileAtomically(data, name: SegmentMapFile.name(of: name), in: folder)
    }

    private func fail(_ error: any Error) {
        state.withLock { if $0.fatal == nil { $0.fatal = error } }
        abort.set()
    }

    private func spawn(id: Int, pooled: Bool, pool: ConnectionPool?) {
        state.withLock { $0.alive += 1 }
        group.enter()
        let thread = Thread { [self] in
            work(id: id)
            state.withLock {
                $0.alive -= 1
                $0.schedule.release(id)
            }
            if pooled { pool?.give() }
            wake.signal()
            group.leave()
        }
        thread.name = "wgpm.segment"
        thread.start()
    }

    /// One worker: fetches its assignment, then the next, until there is none or it gives up.
    private func work(id: Int) {
        guard let connection = CurlConnection(bufferSize: Self.receiveBlock) else { return fail(ExecutorError.gaveUp(path: spec.path, reason: "libcurl could not start")) }
        var failures = 0
        guard var assignment = state.withLock({ $0.schedule.next(for: id) }) else { return }
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: Self.writeBlock, alignment: 4096)
        defer { buffer.deallocate() }
        while !abort.isSet {
            let (source, generation) = state.withLock { ($0.source, $0.generation) }
            let from = assignment.cursor
            // Bounded requests: the Hub's hosts refuse plain GETs of files over 50 GB.
            let through = min(assignment.end, from + downloader.chunkSize) - 1
            let host = origin(of: source.url) ?? source.url
            do { try downloader.hub.breaker.check(host) } catch { return fail(error) }
            let sink = SegmentSink(download: self, worker: id, judging: from == 0, buffer: buffer)
            let headers = downloader.requestHeaders(source)
            var outcome = downloader.transfer.fetch(
                url: source.url, headers: headers, offset: from, through: through, expectedTotal: size,
                followRedirects: !source.sendToken, sink: sink, cancel: abort, connection: connection,
                progress: { [self] _ in progress(state.withLock { $0.schedule.writtenBytes }) })
            do { try sink.settle() } catch let rejected as ContentRejected { outcome = .badContent(rejected.reason) } catch {
                return fail(error as? ExecutorError ?? .cannotWrite(path: spec.path, reason: "\(error)"))
            }
            if let error = sink.failure { return fail(error) }
            do { try downloader.countConnection(outcome, to: host) } catch { return fail(error) }
            let now = state.withLock { $0.schedule.assignment(of: id) } ?? assignment
            let progressed = now.cursor > from
            if progressed { failures = 0 }
            progress(state.withLock { $0.schedule.writtenBytes })
            var reason: String?
            var response: HTTPResponse?
            switch outcome {
            case .cancelled:
                return
            case .localFailure(let message):
                return fail(ExecutorError.cannotWrite(path: spec.path, reason: message))
            case .rangeIgnored:
                state.withLock { $0.singleStream = true }
                abort.set()
                return
            case .completed, .tooLong:
                if !progressed { reason = "the server ended the part from \(formatBytes(from)) without sending any of it" }
            case .badContent(let r):
                reason = r
                notice("\(spec.path): \(r); nothing of it was kept")
            case .rangeNotSatisfiable:
                reason = "the server refused the part from \(formatBytes(from)) of \(formatBytes(size))"
            case .httpError(let status, let h):
                reason = "HTTP \(status)"
                if status == 403 && !source.sendToken {
                    if let error = refresh(after: generation) { return fail(error) }
                } else if [408, 429, 500, 502, 503, 504].contains(status) {
                    response = HTTPResponse(status: status, headers: h)
                } else {
                    return fail(ExecutorError.refused(path: spec.path, reason: httpRefusal(status)))
                }
            case .networkError(let message, _):
                reason = message
            }
            if let reason {
                failures += 1
                state.withLock { $0.lastReason = reason }
                if failures >= downloader.maxAttempts {
                    state.withLock { $0.exhausted = true }
                    return
                }
                // This connection backs off; the others go on, and may take over its range.
                let delay = retryDelay(attempt: failures - 1, response: response, jitter: Double.random(in: 0...1))
                if state.withLock({ s in defer { s.backoffSaid = true }; return !s.backoffSaid }) {
                    notice("\(spec.path): a connection failed (\(reason)); it retries in \(String(format: "%.0f", delay)) s while the others go on")
                }
                downloader.sleeper.sleep(seconds: delay)
            }
            let current = state.withLock { $0.schedule.assignment(of: id) }
            if let current, current.cursor < current.end {
                assignment = current
            } else if let next = state.withLock({ $0.schedule.next(for: id) }) {
                assignment = next
            } else {
                return
            }
        }
    }

    /// Resolves a fresh link after a file host's 403, once for all workers: only when nobody did
    /// since `generation`. Returns a fatal error (the content changed upstream) or nil.
    private func refresh(after generation: Int) -> ExecutorError? {
        guard let url = spec.url, HubReference(url: url) != nil else { return nil }
        let current = state.withLock { $0.generation }
        guard current == generation else { return nil }
        notice("\(spec.path): the file host answered 403 (expired link); resolving a fresh one")
        let source: DownloadSource
        do {
            source = try downloader.resolveSource(spec, url: url, cancel: abort, notice: notice)
        } catch let error as ExecutorError {
            if case .upstreamChanged = error { return error }
            return nil  // the workers go on with the old link and count its refusals
        } catch {
            return nil
        }
        state.withLock {
            if $0.generation == generation {
                $0.source = source
                $0.generation += 1
            }
        }
        return nil
    }

    /// Writes `bytes` at `worker`'s cursor; returns how many fit in its assignment.
    func write(_ bytes: UnsafeRawBufferPointer, worker: Int) throws -> Int {
        let (offset, count, first) = state.withLock { s in
            let first = !s.rangesWork
            s.rangesWork = true
            let (offset, count) = s.schedule.reserve(worker, Int64(bytes.count))
            return (offset, count, first)
        }
        if first { wake.signal() }  // the host serves ranges: the others may start now
        var done = 0
        while done < Int(count) {
            let n = pwrite(fd, bytes.baseAddress! + done, Int(count) - done, off_t(offset) + off_t(done))
            if n < 0 {
                if errno == EINTR { continue }
                let code = errno
                state.withLock { $0.schedule.commit(worker, Int64(done)) }
                throw ExecutorError.posix(path: spec.path, code: code, doing: "write")
            }
            done += n
        }
        state.withLock { $0.schedule.commit(worker, Int64(done)) }
        return done
    }

    func room(of worker: Int) -> Int64 {
        state.withLock { s in s.schedule.assignment(of: worker).map { $0.end - $0.cursor } ?? 0 }
    }
}

/// The sha256 of a file that is written out of order, computed over the run of written bytes
/// from byte 0 as it grows: bytes that arrived ahead of it are read back (from the page cache)
/// when it reaches them, so no pass over the file follows the last byte and memory is one block.
final class PrefixHasher {
    private var hasher = SHA256()
    private(set) var hashed: Int64 = 0
    private let fd: Int32
    private let buffer: UnsafeMutableRawBufferPointer

    init(fd: Int32, block: Int) {
        self.fd = fd
        buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: block, alignment: 4096)
    }

    deinit { buffer.deallocate() }

    /// Hashes up to `maxSteps` blocks towards `prefix` (every byte before it is written);
    /// returns how many it read. Throws the read's error.
    func advance(to prefix: Int64, maxSteps: Int) throws(POSIXError) -> Int {
        var steps = 0
        while hashed < prefix && steps < maxSteps {
            let n = pread(fd, buffer.baseAddress, min(buffer.count, Int(prefix - hashed)), off_t(hashed))
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { throw POSIXError(POSIXErrorCode(rawValue: n < 0 ? errno : EIO) ?? .EIO) }
            hasher.update(bufferPointer: UnsafeRawBufferPointer(rebasing: buffer[0..<n]))
            hashed += Int64(n)
            steps += 1
        }
        return steps
    }

    func finalize() -> String { hexString(hasher.finalize()) }
}

/// The sink of one range request: gathers the reply in its worker's buffer and writes it into
/// the shared partial at the worker's cursor a buffer at a time, and refuses a `200` with the
/// whole file (the host ignores ranges). The request that starts at byte 0 holds back the first
/// bytes until they can be judged against the file's format.
///
/// Why a buffer: libcurl hands over a rate-capped reply in pieces of a few KiB; taking the
/// shared schedule's lock and the file's inode lock for each piece, sixteen connections spent
/// more CPU on lock hand-offs than on the bytes, and on a small machine that CPU is the file
/// host's or the hash's. The room is the assignment's as of the last write: a steal meanwhile
/// costs at most one buffer of bytes fetched twice, never a byte written twice.
final class SegmentSink: TransferSink {
    let download: SegmentedDownload
    let worker: Int
    private let buffer: UnsafeMutableRawBufferPointer
    private var buffered = 0
    private var knownRoom: Int64
    private var judging: Bool
    private var head: [UInt8] = []
    private(set) var failure: ExecutorError?

    /// `buffer` is the worker's, reused across its requests.
    init(download: SegmentedDownload, worker: Int, judging: Bool, buffer: UnsafeMutableRawBufferPointer) {
        self.download = download
        self.worker = worker
        self.judging = judging
        self.buffer = buffer
        knownRoom = download.room(of: worker)
    }

    var room: Int64? { knownRoom - Int64(buffered) - Int64(head.count) }
    var takesWholeFile: Bool { false }

    func restart() throws {
        throw ExecutorError.cannotWrite(path: download.spec.path, reason: "a range transfer cannot start over")
    }

    func write(_ bytes: UnsafeRawBufferPointer) throws {
        guard judging else { return try put(bytes) }
        let take = min(ContentFormat.prefixLength - head.count, bytes.count)
        head += bytes[0..<take]
        guard head.count >= ContentFormat.prefixLength || Int64(head.count) >= download.size else { return }
        try judge()
        if take < bytes.count { try put(UnsafeRawBufferPointer(rebasing: bytes[take...])) }
    }

    /// Judges held-back first bytes when a reply ended before there were enough, and writes
    /// what is buffered: every accepted byte of the reply is kept, however it ended.
    func settle() throws {
        if judging && !head.isEmpty { try judge() }
        try flush()
    }

    private func judge() throws {
        let start = head
        head = []
        judging = false
        if let problem = ContentFormat.problem(prefix: start, name: download.formatName) {
            throw ContentRejected("the server sent bytes that cannot start \(download.formatName): \(problem)")
        }
        try start.withUnsafeBytes { try put($0) }
    }

    private func put(_ bytes: UnsafeRawBufferPointer) throws {
        var at = 0
        while at < bytes.count {
            let n = min(buffer.count - buffered, bytes.count - at)
            (buffer.baseAddress! + buffered).copyMemory(from: bytes.baseAddress! + at, byteCount: n)
            buffered += n
            at += n
            if buffered == buffer.count { try flush() }
        }
    }

    private func flush() throws {
        guard buffered > 0 else { return }
        defer { buffered = 0 }
        do {
            _ = try download.write(UnsafeRawBufferPointer(rebasing: buffer[0..<buffered]), worker: worker)
        } catch let error as ExecutorError {
            failure = error
            throw error
        }
        knownRoom = download.room(of: worker)
    }
}

/// Reads a small regular file of wgpm's own folder without following a planted symlink; nil
/// when it is missing, not a regular file, or larger than `limit`.
func readOwnFile(_ name: String, in folder: Int32, limit: Int) -> Data? {
    let fd = openat(folder, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var st = stat()
    guard fstat(fd, &st) == 0, st.st_mode & S_IFMT == S_IFREG, st.st_size <= limit else { return nil }
    var data = Data(count: Int(st.st_size))
    let n = data.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, 0) }
    return n == Int(st.st_size) ? data : nil
}

/// Replaces `name` in `folder` with `data` through a temporary file and a rename, so a reader
/// (or a crash) sees the old content or the new, never a mix. Returns false on failure.
func writeOwnFileAtomically(_ data: Data, name: String, in folder: Int32) -> Bool {
    let temporary = name + ".tmp"
    let fd = openOwnFile(temporary, in: folder)
    guard fd >= 0 else { return false }
    let ok = ftruncate(fd, 0) == 0 && data.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) } == data.count && fdatasync(fd) == 0
    close(fd)
    guard ok, renameat(folder, temporary, folder, name) == 0 else {
        unlinkat(folder, temporary, 0)
        return false
    }
    return true
}
