import CCurl
import Foundation
import Synchronization

/// Set from any thread (a signal handler's watcher, a test) to stop transfers at the next callback.
public final class CancelFlag: Sendable {
    private let value = Atomic<Bool>(false)
    public init() {}
    public var isSet: Bool { value.load(ordering: .relaxed) }
    public func set() { value.store(true, ordering: .relaxed) }
}

/// A token bucket shared by all transfers of a run. A transfer that gets ahead of the budget
/// sleeps in its write callback, which blocks only its own thread. libcurl's own per-handle
/// limit is not used: with 512 KiB buffers it lets tens of megabytes through between checks.
public final class BandwidthLimiter: @unchecked Sendable {
    public let bytesPerSecond: Double
    private let lock = NSLock()
    private var available: Double
    private var last = Date()

    public init(bytesPerSecond: Int64) {
        self.bytesPerSecond = Double(bytesPerSecond)
        available = Double(bytesPerSecond) / 4
    }

    public func consume(_ bytes: Int) {
        lock.lock()
        let now = Date()
        available = min(bytesPerSecond / 4, available + now.timeIntervalSince(last) * bytesPerSecond)
        last = now
        available -= Double(bytes)
        let wait = available < 0 ? -available / bytesPerSecond : 0
        lock.unlock()
        if wait > 0 { Thread.sleep(forTimeInterval: wait) }
    }
}

/// Where a Hub file's bytes can be fetched right now.
public struct DownloadSource: Sendable {
    /// The URL to GET (a signed file-host URL for LFS files; never stored beyond one transfer).
    public var url: String
    /// True when `url` is on the Hub's own origin, so the token goes with it.
    public var sendToken: Bool
    public var commit: String?
    /// Identity the Hub states on the resolve response (sha256 for LFS, git sha1 for small files).
    public var linkedETag: String?
    public var linkedSize: Int64?

    public init(url: String, sendToken: Bool, commit: String? = nil, linkedETag: String? = nil, linkedSize: Int64? = nil) {
        self.url = url
        self.sendToken = sendToken
        self.commit = commit
        self.linkedETag = linkedETag
        self.linkedSize = linkedSize
    }
}

/// What one GET delivered into the partial file.
public enum TransferOutcome: Sendable, Equatable {
    /// Status 200 or 206 and the body was written.
    case completed(status: Int)
    /// 416: nothing left to send for this offset.
    case rangeNotSatisfiable(totalSize: Int64?)
    /// A non-2xx reply; its body was not written.
    case httpError(status: Int, headers: [String: String])
    /// Connection problems, timeouts, stalls, a body cut short: retryable.
    case networkError(String)
    /// The caller asked to stop (Ctrl-C).
    case cancelled
}

/// Receives the bytes of a transfer as they arrive. `restart` is called when the server ignored
/// the Range request and sent the whole file (200): everything written so far must be dropped.
public protocol TransferSink: AnyObject {
    func restart() throws
    func write(_ bytes: UnsafeRawBufferPointer) throws
}

/// One streaming GET with libcurl, written through a sink with a 512 KiB receive buffer.
public struct CurlDownload: Sendable {
    public var connectTimeout = 20
    public var lowSpeedTime = 60
    /// Shared by every transfer of a run, so `bandwidth_limit_kb` caps them together.
    public var limiter: BandwidthLimiter?

    public init(limiter: BandwidthLimiter? = nil, lowSpeedTime: Int = 60) {
        self.limiter = limiter
        self.lowSpeedTime = lowSpeedTime
        _ = CurlTransport.globalInit
    }

    final class Context {
        let sink: TransferSink
        let offset: Int64
        let handle: UnsafeMutableRawPointer
        let cancel: CancelFlag?
        let limiter: BandwidthLimiter?
        let progress: (@Sendable (Int64) -> Void)?
        var decided = false
        var accept = false
        var headers: [String: String] = [:]
        var written: Int64 = 0
        var failure: Error?
        var cancelled = false
        var reported: Int64 = 0
        init(sink: TransferSink, offset: Int64, handle: UnsafeMutableRawPointer,
             cancel: CancelFlag?, limiter: BandwidthLimiter?, progress: (@Sendable (Int64) -> Void)?) {
            self.sink = sink
            self.limiter = limiter
            self.offset = offset
            self.handle = handle
            self.cancel = cancel
            self.progress = progress
        }
    }

    /// GETs `url` from byte `offset` (through byte `end` when given, for chunked downloads).
    /// Follows redirects only for requests that carry no token.
    public func fetch(url: String, headers: [(String, String)], offset: Int64, through end: Int64? = nil,
                      followRedirects: Bool, sink: TransferSink, cancel: CancelFlag? = nil,
                      progress: (@Sendable (Int64) -> Void)? = nil) -> TransferOutcome {
        guard let h = curl_easy_init() else { return .networkError("libcurl could not start") }
        defer { curl_easy_cleanup(h) }
        let ctx = Context(sink: sink, offset: offset, handle: h, cancel: cancel, limiter: limiter, progress: progress)
        let opaque = Unmanaged.passRetained(ctx).toOpaque()
        defer { Unmanaged<Context>.fromOpaque(opaque).release() }
        _ = ccurl_setopt_str(h, CURLOPT_URL, url)
        _ = ccurl_setopt_long(h, CURLOPT_NOSIGNAL, 1)
        _ = ccurl_setopt_long(h, CURLOPT_FOLLOWLOCATION, followRedirects ? 1 : 0)
        _ = ccurl_setopt_long(h, CURLOPT_CONNECTTIMEOUT, connectTimeout)
        _ = ccurl_setopt_long(h, CURLOPT_LOW_SPEED_LIMIT, 1024)
        _ = ccurl_setopt_long(h, CURLOPT_LOW_SPEED_TIME, lowSpeedTime)
        _ = ccurl_setopt_long(h, CURLOPT_BUFFERSIZE, 512 * 1024)
        _ = ccurl_setopt_str(h, CURLOPT_USERAGENT, "wgpm/0.1")
        if offset > 0 || end != nil { _ = ccurl_setopt_str(h, CURLOPT_RANGE, "\(offset)-\(end.map(String.init) ?? "")") }
        var list: UnsafeMutablePointer<curl_slist>?
        for (name, value) in headers + [("Accept-Encoding", "identity")] { list = curl_slist_append(list, "\(name): \(value)") }
        defer { curl_slist_free_all(list) }
        _ = ccurl_setopt_slist(h, CURLOPT_HTTPHEADER, list)
        _ = ccurl_setopt_write_cb(h, CURLOPT_HEADERFUNCTION) { ptr, size, count, c in
            let ctx = Unmanaged<Context>.fromOpaque(c!).takeUnretainedValue()
            let n = size * count
            guard let ptr else { return n }
            let line = String(decoding: UnsafeRawBufferPointer(start: ptr, count: n), as: UTF8.self)
            if line.hasPrefix("HTTP/") { ctx.headers = [:]; return n }
            if let colon = line.firstIndex(of: ":") {
                ctx.headers[line[..<colon].trimmingCharacters(in: .whitespaces).lowercased()] =
                    line[line.index(after: colon)...].trimmingCharacters(in: .whitespacesAndNewlines)
            }
            return n
        }
        _ = ccurl_setopt_ptr(h, CURLOPT_HEADERDATA, opaque)
        _ = ccurl_setopt_write_cb(h, CURLOPT_WRITEFUNCTION) { ptr, size, count, c in
            let ctx = Unmanaged<Context>.fromOpaque(c!).takeUnretainedValue()
            let n = size * count
            if !ctx.decided {
                // The first body bytes decide what the reply is (swift-on-linux.md §5).
                ctx.decided = true
                var status = 0
                _ = ccurl_getinfo_long(ctx.handle, CURLINFO_RESPONSE_CODE, &status)
                if status == 206 {
                    let range = ctx.headers["content-range"] ?? ""
                    ctx.accept = range.hasPrefix("bytes \(ctx.offset)-")
                    if !ctx.accept { ctx.failure = TransportError(url: "", message: "the server sent another range (\(range))") }
                } else if status == 200 {
                    ctx.accept = true
                    if ctx.offset > 0 {
                        do { try ctx.sink.restart() } catch { ctx.failure = error; ctx.accept = false }
                    }
                } else {
                    ctx.accept = false
                }
            }
            guard ctx.accept else { return ctx.failure == nil ? n : 0 }  // error bodies are dropped
            if ctx.cancel?.isSet == true { ctx.cancelled = true; return 0 }
            guard let ptr else { return n }
            do {
                try ctx.sink.write(UnsafeRawBufferPointer(start: ptr, count: n))
            } catch {
                ctx.failure = error
                return 0
            }
            ctx.written += Int64(n)
            // Reported here rather than from the progress callback: libcurl calls that only
            // between batches of reads, which with 512 KiB buffers can be seconds apart.
            // Once per MiB is plenty for a display and cheap on the hot path.
            if ctx.written - ctx.reported >= 1 << 20 {
                ctx.reported = ctx.written
                ctx.progress?(ctx.written)
            }
            ctx.limiter?.consume(n)
            return n
        }
        _ = ccurl_setopt_ptr(h, CURLOPT_WRITEDATA, opaque)
        _ = ccurl_setopt_long(h, CURLOPT_NOPROGRESS, 0)
        _ = ccurl_setopt_xferinfo_cb(h) { c, _, _, _, _ in
            let ctx = Unmanaged<Context>.fromOpaque(c!).takeUnretainedValue()
            return ctx.cancel?.isSet == true ? 1 : 0
        }
        _ = ccurl_setopt_ptr(h, CURLOPT_XFERINFODATA, opaque)

        let code = curl_easy_perform(h)
        var status = 0
        _ = ccurl_getinfo_long(h, CURLINFO_RESPONSE_CODE, &status)
        if let failure = ctx.failure {
            if failure is TransportError { return .networkError("\(failure)") }
            return .networkError("writing the partial file failed: \(failure)")
        }
        if code == CURLE_ABORTED_BY_CALLBACK || ctx.cancelled { return .cancelled }
        if status == 416 {
            let total = ctx.headers["content-range"].flatMap { $0.split(separator: "/").last.flatMap { Int64($0) } }
            return .rangeNotSatisfiable(totalSize: total)
        }
        if code != CURLE_OK {
            if status >= 300 && code == CURLE_WRITE_ERROR { return .httpError(status: status, headers: ctx.headers) }
            return .networkError(String(cString: curl_easy_strerror(code)))
        }
        if status == 200 || status == 206 { return .completed(status: status) }
        return .httpError(status: status, headers: ctx.headers)
    }
}

extension HubClient {
    /// Resolves a Hub file to the URL its bytes come from now, following same-origin redirects
    /// with the token and stopping at a redirect to another origin (huggingface-hub.md §5).
    public func downloadSource(_ ref: HubReference, revision: String) throws -> DownloadSource {
        var url = ref.resolveURL(endpoint: endpoint, revision: revision)
        for _ in 0..<20 {
            let r = try send(HTTPRequest(method: "HEAD", url: url))
            if (300..<400).contains(r.status), let target = r.redirectURL {
                let commit = r.header("x-repo-commit")
                if origin(of: target) == origin(of: url) || origin(of: target) == origin(of: endpoint) {
                    url = target
                    continue
                }
                return DownloadSource(url: target, sendToken: false, commit: commit,
                                      linkedETag: r.header("x-linked-etag").map(normalizeETag),
                                      linkedSize: r.header("x-linked-size").flatMap { Int64($0) })
            }
            guard r.status == 200 else { throw failure(r, url: url, repo: ref.repo, revision: revision, path: ref.path) }
            guard let commit = r.header("x-repo-commit") else { throw HubError.notAHub(url: url) }
            return DownloadSource(url: url, sendToken: headers(for: url).count > 0, commit: commit,
                                  linkedETag: (r.header("x-linked-etag") ?? r.header("etag")).map(normalizeETag),
                                  linkedSize: r.header("x-linked-size").flatMap { Int64($0) } ?? r.header("content-length").flatMap { Int64($0) })
        }
        throw HubError.malformed(url: url, message: "more than 20 redirects")
    }

    /// The Authorization header for a download URL, when it may carry the token.
    public func authorization(for url: String) -> [(String, String)] { headers(for: url) }
}

/// Drops a leading `W/` and the quotes.
public func normalizeETag(_ value: String) -> String {
    var v = value.trimmingCharacters(in: .whitespaces)
    if v.hasPrefix("W/") { v.removeFirst(2) }
    return v.trimmingCharacters(in: CharacterSet(charactersIn: "\"")).lowercased()
}
