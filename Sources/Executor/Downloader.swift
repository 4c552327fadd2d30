import Foundation
import HubClient
import Inventory
import Planner
#if canImport(Glibc)
import Glibc
#endif

/// Carries out download jobs: partial file on the target's filesystem, resume with Range,
/// retries with backoff, re-resolve on a file-host 403, verification, atomic rename.
public struct Downloader: Sendable {
    public var hub: HubClient
    public var transfer: CurlDownload
    public var sleeper: Sleeper
    /// Attempts without progress before a job fails. Progress means the partial file grew
    /// past the most it ever held in this run: a host that keeps sending the same short or
    /// wrong start, or that makes the partial restart, does not reset the count.
    public var maxAttempts: Int
    /// Files larger than this are fetched in bounded `Range: bytes=N-M` requests of `chunkSize`:
    /// the Hub's file hosts do not serve a single plain GET for files over 50 GB
    /// (huggingface-hub.md §6, "Very large files").
    public var chunkThreshold: Int64 = 50_000_000_000
    public var chunkSize: Int64 = 8 << 30
    /// The most a file of unknown size may grow to (no Hub metadata, no lock): a body that
    /// never ends is cut here instead of filling the disk.
    public var unknownSizeLimit: Int64 = 200_000_000_000
    /// Where jobs may write; nil: inferred from each job's own path and target.
    public var confinement: Confinement?
    public var fileSystem: FileSystem = LocalFileSystem()
    /// Connections one file may use (`connections_per_file`); 1: one stream per file.
    public var connectionsPerFile = 1
    /// Bytes/s at which a segmented download's first connection carries the file alone
    /// (`single_stream_above_mbs`); 0: more connections always start.
    public var singleStreamAbove: Double = 100e6
    /// Connections beyond each file's first, shared by all files of a run (`max_connections`).
    public var pool: ConnectionPool?
    /// Files of at least this size with a known sha256 are fetched as parallel ranges.
    public var segmentThreshold: Int64 = 64 << 20
    /// Asks every cache on the way for fresh bytes (`Cache-Control: no-cache`): set for the one
    /// retry after a download failed its hash, so a proxy's corrupted cache entry is fetched again.
    public var bypassCaches = false

    public init(hub: HubClient, transfer: CurlDownload = CurlDownload(), sleeper: Sleeper = RealSleeper(), maxAttempts: Int = 6,
                confinement: Confinement? = nil) {
        self.hub = hub
        self.transfer = transfer
        self.sleeper = sleeper
        self.maxAttempts = maxAttempts
        self.confinement = confinement
    }

    /// The partial file's name: keyed by the expected content, not the (signed, changing) URL.
    static func partialName(_ spec: JobSpec) -> String {
        let identity = spec.sha256 ?? spec.gitSHA1 ?? String(spec.id.prefix(40))
        return "\(identity)-\(spec.size ?? 0).part"
    }

    /// Downloads one file to its target. Returns the bytes this run fetched (a resumed download
    /// does not count what an earlier run left in its partial). A download that fails its hash
    /// is fetched once more from the start with `Cache-Control: no-cache`: a caching proxy
    /// (nginx, olah) would otherwise serve the same bad bytes on every attempt.
    @discardableResult
    public func run(_ spec: JobSpec, cancel: CancelFlag, progress: @escaping @Sendable (Int64) -> Void,
                    notice: @escaping @Sendable (String) -> Void) throws -> Int64 {
        do {
            return try attempt(spec, cancel: cancel, progress: progress, notice: notice)
        } catch ExecutorError.verificationFailed(let path, _, _) where !bypassCaches {
            notice("\(path): the bytes received do not match the expected hash; fetching it again past any cache")
            var fresh = self
            fresh.bypassCaches = true
            return try fresh.attempt(spec, cancel: cancel, progress: progress, notice: notice)
        }
    }

    /// The headers of a file request: the token where it may go, and `no-cache` when asked.
    func requestHeaders(_ source: DownloadSource, noCache: Bool? = nil) -> [(String, String)] {
        (source.sendToken ? hub.authorization(for: source.url) : [])
            + (noCache ?? bypassCaches ? [("Cache-Control", "no-cache"), ("Pragma", "no-cache")] : [])
    }

    private func attempt(_ spec: JobSpec, cancel: CancelFlag, progress: @escaping @Sendable (Int64) -> Void,
                         notice: @escaping @Sendable (String) -> Void) throws -> Int64 {
        guard let url = spec.url else { throw ExecutorError.refused(path: spec.path, reason: "the queued job has no URL; run 'wgpm plan' and apply again") }
        if let size = spec.size, size < 0 {
            throw ExecutorError.refused(path: spec.path, reason: "the expected size \(size) is not a byte count; run 'wgpm plan --refresh'")
        }
        let confinement = self.confinement ?? .inferred(from: spec)
        try confinement.check(spec)
        let partialDir = try confinement.partialFolder(for: spec, fileSystem: fileSystem)
        // Both folders are opened by a walk from the root that follows no planted symlink; the
        // partial file and the final rename go through these descriptors, not paths again.
        let partialFolder = try confinement.openFolder(partialDir, for: spec.path, create: true)
        defer { close(partialFolder) }
        let targetFolder = try confinement.openFolder((spec.target as NSString).deletingLastPathComponent, for: spec.path, create: true)
        defer { close(targetFolder) }
        if connectionsPerFile > 1, let size = spec.size, size >= segmentThreshold, let sha256 = spec.sha256 {
            if let placed = try runSegmented(spec, size: size, sha256: sha256, partialFolder: partialFolder, targetFolder: targetFolder,
                                             cancel: cancel, progress: progress, notice: notice) {
                return placed
            }
        }
        // A segmented partial has holes: one stream continues only after its run from byte 0.
        SegmentedDownload.reduceToPrefix(folder: partialFolder, name: Self.partialName(spec), size: spec.size, sha256: spec.sha256)
        let partial = try PartialFile(path: partialDir + "/" + Self.partialName(spec), in: partialFolder, expectedSize: spec.size,
                                      wantGitSHA1: spec.sha256 == nil && spec.gitSHA1 != nil,
                                      formatName: (spec.path as NSString).lastPathComponent)
        progress(partial.length)
        var failures = 0
        var best = partial.length
        var lastReason = ""
        // After a reply that cannot be the file (a cached login page), ask past the caches too.
        var noCache = bypassCaches
        while true {
            if cancel.isSet { throw ExecutorError.cancelled }
            if failures >= maxAttempts { throw ExecutorError.gaveUp(path: spec.path, reason: "\(maxAttempts) tries failed, the last: \(lastReason)") }
            // Already complete (an earlier run was stopped between the last byte and the rename).
            if let size = spec.size, partial.length == size {
                return try finishFetched(spec, partial, into: targetFolder)
            }
            let source = try resolveSource(spec, url: url, cancel: cancel, notice: notice)
            // The file host's connections count in the run's breaker as the Hub's do: when it
            // is down, every job that needs it stops at once with one reason.
            let host = origin(of: source.url) ?? source.url
            try hub.breaker.check(host)
            let before = partial.length
            // Chunks sit on a fixed grid, so a chunk cut short is resumed up to its own end.
            let end = spec.size.flatMap { size in size > chunkThreshold ? min((before / chunkSize + 1) * chunkSize, size) - 1 : nil }
            // Never more than the file can hold: what lies past it is not this file.
            let limit = spec.size.map { (end ?? $0 - 1) - before + 1 } ?? unknownSizeLimit - before
            let headers = requestHeaders(source, noCache: noCache)
            var outcome = transfer.fetch(url: source.url, headers: headers, offset: before, through: end, expectedTotal: spec.size, limit: limit,
                                         followRedirects: !source.sendToken, sink: partial, cancel: cancel,
                                         progress: { [gauge = partial.gauge] _ in progress(gauge.current) })
            do { try partial.settle() } catch let rejected as ContentRejected { outcome = .badContent(rejected.reason) }
            try countConnection(outcome, to: host)
            progress(partial.length)
            if partial.length > best {
                best = partial.length
                failures = 0
            }
            switch outcome {
            case .cancelled:
                throw ExecutorError.cancelled
            case .localFailure(let message):
                throw partial.failure ?? ExecutorError.cannotWrite(path: spec.path, reason: message)
            case .tooLong where spec.size == nil:
                throw ExecutorError.refused(path: spec.path, reason: "the server sent more than \(formatBytes(unknownSizeLimit)) for a file of unknown size; nothing was placed")
            case .completed, .tooLong:
                if let size = spec.size, partial.length < size {
                    if let end, partial.length == end + 1 { continue }  // a whole chunk: the next one follows
                    failures += 1
                    lastReason = "the server keeps ending the file after \(formatBytes(partial.length)) of \(formatBytes(size))"
                    wait(failures - 1, nil, spec, notice, because: lastReason)
                    continue
                }
                return try finishFetched(spec, partial, into: targetFolder)
            case .badContent(let reason):
                // Nothing of it was kept: the start was held back, or the reply was refused
                // before its first byte was written.
                failures += 1
                lastReason = reason
                noCache = true
                notice("\(spec.path): \(reason); nothing of it was kept")
                wait(failures - 1, nil, spec, notice, because: lastReason)
            case .rangeNotSatisfiable:
                if let size = spec.size, partial.length == size { return try finishFetched(spec, partial, into: targetFolder) }
                try partial.restart()  // the partial belongs to other content
                failures += 1
                lastReason = "the server refused to resume after the \(formatBytes(before)) already fetched"
            case .httpError(let status, let respHeaders):
                lastReason = "the server answered HTTP \(status)"
                if status == 403 && !source.sendToken {
                    // A signed file-host URL expired: resolve again and continue from the partial.
                    notice("\(spec.path): the file host answered 403 (expired link); resolving a fresh one")
                    failures += 1
                    continue
                }
                if [408, 429, 500, 502, 503, 504].contains(status) {
                    failures += 1
                    wait(failures - 1, HTTPResponse(status: status, headers: respHeaders), spec, notice, because: lastReason)
                    continue
                }
                throw ExecutorError.refused(path: spec.path, reason: httpRefusal(status))
            case .networkError(let message, _):
                failures += 1
                lastReason = message
                wait(failures - 1, nil, spec, notice, because: lastReason)
            case .rangeIgnored:
                // Only sinks that take ranges alone get this; the partial file takes whole files.
                throw ExecutorError.refused(path: spec.path, reason: "the server ignored a range request")
            }
        }
    }

    /// The segmented path: resolves the link, runs the workers, and moves the verified file into
    /// place. Returns nil when the host ignores ranges, or when one connection alone is fast
    /// (the caller goes on with one stream).
    private func runSegmented(_ spec: JobSpec, size: Int64, sha256: String, partialFolder: Int32, targetFolder: Int32,
                              cancel: CancelFlag, progress: @escaping @Sendable (Int64) -> Void,
                              notice: @escaping @Sendable (String) -> Void) throws -> Int64? {
        guard let url = spec.url else { return nil }
        let source = try resolveSource(spec, url: url, cancel: cancel, notice: notice)
        let name = Self.partialName(spec)
        let download = try SegmentedDownload(spec: spec, size: size, sha256: sha256, folder: partialFolder, name: name,
                                             source: source, downloader: self, progress: progress, notice: notice)
        switch try download.run(connections: connectionsPerFile, pool: pool, cancel: cancel) {
        case .singleStream(let rangesIgnored):
            if rangesIgnored { notice("\(spec.path): the file host does not serve byte ranges; fetching it as one stream") }
            return nil
        case .placed(let bytes):
            guard renameat(partialFolder, name, targetFolder, (spec.target as NSString).lastPathComponent) == 0 else {
                throw ExecutorError.posix(path: spec.path, code: errno, doing: "moving the finished download into place")
            }
            unlinkat(partialFolder, SegmentMapFile.name(of: name), 0)
            syncDirectory(targetFolder)
            return bytes
        }
    }

    /// Where to fetch `spec` from now. A Hub URL is resolved afresh each time (the file host's
    /// signed URL expires), waiting and retrying while the Hub is unreachable; the Hub's
    /// `X-Linked-Etag` naming other content than the job's stops the job before any byte.
    func resolveSource(_ spec: JobSpec, url: String, cancel: CancelFlag, notice: @escaping @Sendable (String) -> Void) throws -> DownloadSource {
        guard let ref = HubReference(url: url) else { return DownloadSource(url: url, sendToken: false) }
        var failures = 0
        while true {
            if cancel.isSet { throw ExecutorError.cancelled }
            let source: DownloadSource
            do {
                source = try hub.downloadSource(ref, revision: spec.commit ?? ref.revision)
            } catch let error as HubError {
                guard case .unreachable = error else { throw error }
                failures += 1
                if failures >= maxAttempts { throw ExecutorError.gaveUp(path: spec.path, reason: "\(maxAttempts) tries failed, the last: \(error)") }
                wait(failures - 1, nil, spec, notice, because: "\(error)")
                continue
            }
            if let served = source.linkedETag, let expected = spec.sha256 ?? spec.gitSHA1, served.count == expected.count, served != expected {
                throw ExecutorError.upstreamChanged(path: spec.path, expected: expected, served: served)
            }
            return source
        }
    }

    /// Tells the run's breaker how a connection to `host` went; throws once it gives up on it.
    func countConnection(_ outcome: TransferOutcome, to host: String) throws {
        switch outcome {
        case .networkError(_, cannotConnect: true):
            hub.breaker.recordFailure(host)
            try hub.breaker.check(host)
        case .networkError, .cancelled, .localFailure:
            break
        default:
            hub.breaker.recordAnswer(host)
        }
    }

    private func wait(_ attempt: Int, _ response: HTTPResponse?, _ spec: JobSpec, _ notice: @Sendable (String) -> Void, because reason: String) {
        let delay = retryDelay(attempt: attempt, response: response, jitter: Double.random(in: 0...1))
        notice("\(spec.path): \(reason.isEmpty ? "the transfer failed" : reason); retrying in \(String(format: "%.0f", delay)) s")
        sleeper.sleep(seconds: delay)
    }

    private func finishFetched(_ spec: JobSpec, _ partial: PartialFile, into targetFolder: Int32) throws -> Int64 {
        _ = try finish(spec, partial, into: targetFolder)
        return partial.fetched
    }

    /// Verifies size and hash, flushes, and renames the partial file over the target.
    private func finish(_ spec: JobSpec, _ partial: PartialFile, into targetFolder: Int32) throws -> Int64 {
        if let size = spec.size, partial.length != size {
            partial.remove()
            throw ExecutorError.sizeMismatch(path: spec.path, expected: size, actual: partial.length)
        }
        let (sha256, gitSHA1) = partial.digests()
        if let expected = spec.sha256, expected != sha256 {
            partial.remove()
            throw ExecutorError.verificationFailed(path: spec.path, expected: expected, actual: sha256)
        }
        // The git sha1 is computed as the bytes stream only when the size is known up front
        // (it starts with "blob <size>"); otherwise it is computed from the finished file.
        let actualSHA1 = spec.sha256 == nil && spec.gitSHA1 != nil
            ? try gitSHA1 ?? fileSystem.hash(partial.path, sha256: false, gitSHA1: true).gitSHA1 : gitSHA1
        if spec.sha256 == nil, let expected = spec.gitSHA1, let actual = actualSHA1, expected != actual {
            partial.remove()
            throw ExecutorError.verificationFailed(path: spec.path, expected: expected, actual: actual)
        }
        try partial.sync()
        guard renameat(partial.folder, partial.name, targetFolder, (spec.target as NSString).lastPathComponent) == 0 else {
            throw ExecutorError.posix(path: spec.path, code: errno, doing: "moving the finished download into place")
        }
        syncDirectory(targetFolder)
        return partial.length
    }
}

/// Why a file request answered with a status that retrying cannot change stops the job.
func httpRefusal(_ status: Int) -> String {
    switch status {
    case 401, 403: return "the server answered HTTP \(status) (no access): check HF_TOKEN and the repo's terms, then 'wgpm queue retry'"
    case 404, 410: return "the server answered HTTP \(status) (not there): the file moved or the URL is wrong; 'wgpm plan --refresh' asks the Hub again"
    default: return "the server answered HTTP \(status); not retried"
    }
}
