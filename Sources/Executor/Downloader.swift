import Foundation
import HubClient
#if canImport(Glibc)
import Glibc
#endif

/// Carries out download jobs: partial file on the target's filesystem, resume with Range,
/// retries with backoff, re-resolve on a file-host 403, verification, atomic rename.
public struct Downloader: Sendable {
    public var hub: HubClient
    public var transfer: CurlDownload
    public var sleeper: Sleeper
    /// Attempts without progress before a job fails (an attempt that moved bytes resets it).
    public var maxAttempts: Int
    /// Files larger than this are fetched in bounded `Range: bytes=N-M` requests of `chunkSize`:
    /// the Hub's file hosts do not serve a single plain GET for files over 50 GB
    /// (huggingface-hub.md §6, "Very large files").
    public var chunkThreshold: Int64 = 50_000_000_000
    public var chunkSize: Int64 = 8 << 30

    public init(hub: HubClient, transfer: CurlDownload = CurlDownload(), sleeper: Sleeper = RealSleeper(), maxAttempts: Int = 6) {
        self.hub = hub
        self.transfer = transfer
        self.sleeper = sleeper
        self.maxAttempts = maxAttempts
    }

    /// The partial file's name: keyed by the expected content, not the (signed, changing) URL.
    static func partialName(_ spec: JobSpec) -> String {
        let identity = spec.sha256 ?? spec.gitSHA1 ?? String(spec.id.prefix(40))
        return "\(identity)-\(spec.size ?? 0).part"
    }

    /// Downloads one file to its target. Returns the bytes placed.
    @discardableResult
    public func run(_ spec: JobSpec, cancel: CancelFlag, progress: @escaping @Sendable (Int64) -> Void,
                    notice: @escaping @Sendable (String) -> Void) throws -> Int64 {
        guard let url = spec.url else { throw ExecutorError.gaveUp(path: spec.path, reason: "no URL") }
        let partialDir = spec.partialDirectory ?? ((spec.target as NSString).deletingLastPathComponent + "/.wgpm-partial")
        let targetDir = (spec.target as NSString).deletingLastPathComponent
        try makeDirectories(partialDir, for: spec.path)
        try makeDirectories(targetDir, for: spec.path)
        let partialPath = partialDir + "/" + Self.partialName(spec)
        let partial = try PartialFile(path: partialPath, expectedSize: spec.size, wantGitSHA1: spec.sha256 == nil && spec.gitSHA1 != nil)
        progress(partial.length)
        let ref = HubReference(url: url)
        var failures = 0
        var lastReason = ""
        while true {
            if cancel.isSet { throw ExecutorError.cancelled }
            if failures >= maxAttempts { throw ExecutorError.gaveUp(path: spec.path, reason: lastReason) }
            // Already complete (an earlier run was stopped between the last byte and the rename).
            if let size = spec.size, partial.length == size {
                return try finish(spec, partial)
            }
            var source = DownloadSource(url: url, sendToken: false)
            if let ref {
                do {
                    source = try hub.downloadSource(ref, revision: spec.commit ?? ref.revision)
                } catch let error as HubError {
                    if case .unreachable = error {
                        failures += 1
                        lastReason = "\(error)"
                        wait(failures - 1, nil, spec, notice)
                        continue
                    }
                    throw error
                }
                if let served = source.linkedETag, let expected = spec.sha256 ?? spec.gitSHA1, served.count == expected.count, served != expected {
                    throw ExecutorError.upstreamChanged(path: spec.path, expected: expected, served: served)
                }
            }
            let before = partial.length
            // Chunks sit on a fixed grid, so a chunk cut short is resumed up to its own end.
            let end = spec.size.flatMap { size in size > chunkThreshold ? min((before / chunkSize + 1) * chunkSize, size) - 1 : nil }
            let headers = source.sendToken ? hub.authorization(for: source.url) : []
            let outcome = transfer.fetch(url: source.url, headers: headers, offset: partial.length, through: end,
                                         followRedirects: !source.sendToken, sink: partial, cancel: cancel,
                                         progress: { [partial] _ in progress(partial.length) })
            progress(partial.length)
            if partial.length > before { failures = 0 }
            switch outcome {
            case .cancelled:
                throw ExecutorError.cancelled
            case .completed:
                if let size = spec.size, partial.length < size {
                    if let end, partial.length == end + 1 { continue }  // a whole chunk: the next one follows
                    failures += 1
                    lastReason = "the connection ended after \(partial.length) of \(size) bytes"
                    wait(failures - 1, nil, spec, notice)
                    continue
                }
                return try finish(spec, partial)
            case .rangeNotSatisfiable:
                if let size = spec.size, partial.length == size { return try finish(spec, partial) }
                try partial.restart()  // the partial belongs to other content
                failures += 1
                lastReason = "the server refused the resume offset"
            case .httpError(let status, let respHeaders):
                lastReason = "HTTP \(status)"
                if status == 403 && !source.sendToken {
                    // A signed file-host URL expired: resolve again and continue from the partial.
                    notice("\(spec.path): the file host answered 403 (expired link); resolving a fresh one")
                    failures += 1
                    continue
                }
                if [408, 429, 500, 502, 503, 504].contains(status) {
                    failures += 1
                    wait(failures - 1, HTTPResponse(status: status, headers: respHeaders), spec, notice)
                    continue
                }
                throw ExecutorError.gaveUp(path: spec.path, reason: "the server answered HTTP \(status)")
            case .networkError(let message):
                failures += 1
                lastReason = message
                wait(failures - 1, nil, spec, notice)
            }
        }
    }

    private func wait(_ attempt: Int, _ response: HTTPResponse?, _ spec: JobSpec, _ notice: @Sendable (String) -> Void) {
        let delay = retryDelay(attempt: attempt, response: response, jitter: Double.random(in: 0...1))
        notice("\(spec.path): retrying in \(String(format: "%.0f", delay)) s")
        sleeper.sleep(seconds: delay)
    }

    /// Verifies size and hash, flushes, and renames the partial file over the target.
    private func finish(_ spec: JobSpec, _ partial: PartialFile) throws -> Int64 {
        if let size = spec.size, partial.length != size {
            unlink(partial.path)
            throw ExecutorError.sizeMismatch(path: spec.path, expected: size, actual: partial.length)
        }
        let (sha256, gitSHA1) = partial.digests()
        if let expected = spec.sha256, expected != sha256 {
            unlink(partial.path)
            throw ExecutorError.verificationFailed(path: spec.path, expected: expected, actual: sha256)
        }
        if spec.sha256 == nil, let expected = spec.gitSHA1, let actual = gitSHA1, expected != actual {
            unlink(partial.path)
            throw ExecutorError.verificationFailed(path: spec.path, expected: expected, actual: actual)
        }
        try partial.sync()
        guard rename(partial.path, spec.target) == 0 else {
            throw ExecutorError.cannotWrite(path: spec.path, reason: String(cString: strerror(errno)))
        }
        syncDirectory((spec.target as NSString).deletingLastPathComponent)
        return partial.length
    }
}
