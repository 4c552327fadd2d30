import CCurl
import Foundation
import Planner
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
public final class BandwidthLimiter: Sendable {
    public let bytesPerSecond: Double
    /// Bytes that may pass now (negative: owed), and when that was computed.
    private let bucket: Mutex<(available: Double, last: Date)>

    public init(bytesPerSecond: Int64) {
        self.bytesPerSecond = Double(bytesPerSecond)
        bucket = Mutex((Double(bytesPerSecond) / 4, Date()))
    }

    public func consume(_ bytes: Int) {
        let wait = bucket.withLock { b -> Double in
            let now = Date()
            b.available = min(bytesPerSecond / 4, b.available + now.timeIntervalSince(b.last) * bytesPerSecond)
            b.last = now
            b.available -= Double(bytes)
            return b.available < 0 ? -b.available / bytesPerSecond : 0
        }
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
    /// The body went on past the bytes this request may deliver; those were written, the rest
    /// was refused (a server that never ends, or a wrong Content-Length).
    case tooLong(status: Int)
    /// 416: nothing left to send for this offset.
    case rangeNotSatisfiable(totalSize: Int64?)
    /// A non-2xx reply; its body was not written.
    case httpError(status: Int, headers: [String: String])
    /// A reply that cannot be the file (an HTML page, bytes that cannot start its format);
    /// nothing of it was kept. Retryable: a proxy or a host may send one by mistake.
    case badContent(String)
    /// Connection problems, timeouts, stalls, a body cut short: retryable. `cannotConnect`:
    /// no connection was made at all (refused, name not resolved), which the run's
    /// `HostBreaker` counts.
    case networkError(String, cannotConnect: Bool = false)
    /// A `200` with the whole file to a range request, for a sink that takes ranges only
    /// (`TransferSink.takesWholeFile`): nothing was written. The host does not serve ranges.
    case rangeIgnored
    /// Writing to the local disk failed: not the network's fault, not retried.
    case localFailure(String)
    /// The caller asked to stop (Ctrl-C).
    case cancelled
}

/// Thrown by a sink that looked at the first bytes of the body and refuses them.
public struct ContentRejected: Error, CustomStringConvertible {
    public var reason: String
    public init(_ reason: String) { self.reason = reason }
    public var description: String { reason }
}

/// Receives the bytes of a transfer as they arrive. `restart` is called when the server ignored
/// the Range request and sent the whole file (200): everything written so far must be dropped.
public protocol TransferSink: AnyObject {
    func restart() throws
    /// Throws `ContentRejected` for bytes that cannot be the file, anything else for a local failure.
    func write(_ bytes: UnsafeRawBufferPointer) throws
    /// Bytes the sink still takes from this reply, read before every write; nil: only the
    /// request's own limit. A segment that was split while its reply streams stops at its new end.
    var room: Int64? { get }
    /// False for a sink that writes one range of a file: a `200` reply to its range request
    /// ends the transfer as `.rangeIgnored` instead of restarting the sink.
    var takesWholeFile: Bool { get }
}

extension TransferSink {
    public var room: Int64? { nil }
    public var takesWholeFile: Bool { true }
}

/// One libcurl easy handle kept across requests by one thread: a worker's next range request
/// reuses the connection its last one left open (libcurl keeps it alive across a reset).
public final class CurlConnection {
    let handle: UnsafeMutableRawPointer
    /// libcurl's receive buffer for this connection's transfers, when not the default 512 KiB:
    /// one of sixteen connections carries a sixteenth of the bytes and needs less.
    let bufferSize: Int?

    public init?(bufferSize: Int? = nil) {
        _ = CurlTransport.globalInit
        guard let h = curl_easy_init() else { return nil }
        handle = h
        self.bufferSize = bufferSize
    }

    deinit { curl_easy_cleanup(handle) }
}

/// The parts of a `Content-Range: bytes FIRST-LAST/TOTAL` header; TOTAL nil for `*`.
struct ContentRange: Equatable {
    var first: Int64
    var last: Int64
    var total: Int64?

    init?(_ header: String) {
        let value = header.trimmingCharacters(in: .whitespaces)
        guard value.hasPrefix("bytes ") else { return nil }
        let parts = value.dropFirst(6).split(separator: "/", maxSplits: 1)
        guard parts.count == 2 else { return nil }
        let bounds = parts[0].split(separator: "-", maxSplits: 1)
        guard bounds.count == 2, let first = Int64(bounds[0]), let last = Int64(bounds[1]), first >= 0, last >= first else { return nil }
        self.first = first
        self.last = last
        if parts[1] == "*" {
            total = nil
        } else {
            guard let total = Int64(parts[1]), total > last else { return nil }
            self.total = total
        }
    }
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
        let end: Int64?
        let expectedTotal: Int64?
        var limit: Int64?
        let handle: UnsafeMutableRawPointer
        let cancel: CancelFlag?
        let limiter: BandwidthLimiter?
        let progress: (@Sendable (Int64) -> Void)?
        let url: String
        var decided = false
        var accept = false
        var headers = HeaderLines()
        var written: Int64 = 0
        var overflow = false
        var rejected: String?
        var failure: String?
        var rangeIgnored = false
        var cancelled = false
        /// The failure is the local disk's (a sink or restart error), not the network's.
        var localError = false
        var reported: Int64 = 0
        var reportedAt = monotonicSeconds()
        init(sink: TransferSink, offset: Int64, end: Int64?, expectedTotal: Int64?, limit: Int64?, handle: UnsafeMutableRawPointer,
             url: String, cancel: CancelFlag?, limiter: BandwidthLimiter?, progress: (@Sendable (Int64) -> Void)?) {
            self.sink = sink
            self.limiter = limiter
            self.offset = offset
            self.end = end
            self.expectedTotal = expectedTotal
            self.limit = limit
            self.handle = handle
            self.url = url
            self.cancel = cancel
            self.progress = progress
        }

        /// Decides from the status and headers, at the first body bytes, whether this reply is
        /// the file (swift-on-linux.md §5). Sets `rejected` or `failure` when it is not.
        func decide() {
            decided = true
            var status = 0
            _ = ccurl_getinfo_long(handle, CURLINFO_RESPONSE_CODE, &status)
            guard status == 200 || status == 206 else { accept = false; return }
            // A model file is never served as a web page: a login or error page from a proxy,
            // a captive portal or a misconfigured mirror. Refused before a byte is written.
            let type = headers.values["content-type"]?.lowercased() ?? ""
            if type.hasPrefix("text/html") || type.hasPrefix("application/xhtml") {
                rejected = "the server sent a web page (Content-Type \(type)) instead of the file"
                return
            }
            if status == 206 {
                // The range must start where asked, end no later than asked, and belong to a
                // file of the expected size: bytes of another range or file are not this one's.
                let header = headers.values["content-range"] ?? ""
                let range = ContentRange(header)
                accept = range.map { r in
                    r.first == offset && (end.map { r.last <= $0 } ?? true)
                        && (expectedTotal.map { expected in r.total.map { $0 == expected } ?? true } ?? true)
                } ?? false
                if !accept {
                    // In words and units; the raw header is for --verbose logs, not for people.
                    let asked = "from \(formatBytes(offset))" + (expectedTotal.map { " of \(formatBytes($0))" } ?? "")
                    let got = range.map { r in "from \(formatBytes(r.first))" + (r.total.map { " of \(formatBytes($0))" } ?? "") } ?? "no range"
                    failure = "the server sent another part of the file than asked for (\(got), asked \(asked))"
                }
            } else if !sink.takesWholeFile && (offset > 0 || end != nil) {
                rangeIgnored = true
                accept = false
            } else {
                accept = true
                if offset > 0 {
                    // The whole file from its first byte: the sink starts over, and the bytes
                    // this reply may deliver now count from 0.
                    do { try sink.restart() } catch { failure = "\(error)"; accept = false; localError = true }
                    limit = limit.map { $0 + offset }
                }
            }
        }
    }

    /// GETs `url` from byte `offset` (through byte `end` when given, for chunked downloads),
    /// writing at most `limit` bytes of body (when given) and refusing the rest. A 206 must
    /// carry a Content-Range inside the one asked for, of a file of `expectedTotal` bytes.
    /// Follows redirects (http/https only, a bounded number) only for requests that carry no token.
    /// With `connection`, its handle is used (and its open connection reused) instead of a new one.
    public func fetch(url: String, headers: [(String, String)], offset: Int64, through end: Int64? = nil,
                      expectedTotal: Int64? = nil, limit: Int64? = nil, followRedirects: Bool, sink: TransferSink,
                      cancel: CancelFlag? = nil, connection: CurlConnection? = nil,
                      progress: (@Sendable (Int64) -> Void)? = nil) -> TransferOutcome {
        guard isAllowedScheme(url) else {
            return .badContent("the download URL \(displayURL(url)) is not http or https; wgpm refuses it")
        }
        let handle: UnsafeMutableRawPointer?
        if let connection {
            curl_easy_reset(connection.handle)
            handle = connection.handle
        } else {
            handle = curl_easy_init()
        }
        guard let h = handle else { return .networkError("libcurl could not start") }
        defer { if connection == nil { curl_easy_cleanup(h) } }
        let ctx = Context(sink: sink, offset: offset, end: end, expectedTotal: expectedTotal, limit: limit, handle: h,
                          url: displayURL(url), cancel: cancel, limiter: limiter, progress: progress)
        let opaque = Unmanaged.passRetained(ctx).toOpaque()
        defer { Unmanaged<Context>.fromOpaque(opaque).release() }
        let options = CurlOptions(connectTimeout: connectTimeout, lowSpeedTime: lowSpeedTime, userAgent: "wgpm/0.1")
        let list = options.apply(to: h, url: url, headers: headers, followRedirects: followRedirects)
        defer { curl_slist_free_all(list) }
        if let size = connection?.bufferSize { _ = ccurl_setopt_long(h, CURLOPT_BUFFERSIZE, size) }
        if offset > 0 || end != nil { _ = ccurl_setopt_str(h, CURLOPT_RANGE, "\(offset)-\(end.map(String.init) ?? "")") }
        _ = ccurl_setopt_write_cb(h, CURLOPT_HEADERFUNCTION) { ptr, size, count, c in
            Unmanaged<Context>.fromOpaque(c!).takeUnretainedValue().headers.take(ptr, size * count)
            return size * count
        }
        _ = ccurl_setopt_ptr(h, CURLOPT_HEADERDATA, opaque)
        _ = ccurl_setopt_write_cb(h, CURLOPT_WRITEFUNCTION) { ptr, size, count, c in
            let ctx = Unmanaged<Context>.fromOpaque(c!).takeUnretainedValue()
            let n = size * count
            if !ctx.decided { ctx.decide() }
            if ctx.rejected != nil || ctx.failure != nil || ctx.rangeIgnored { return 0 }
            guard ctx.accept else { return n }  // error bodies are dropped
            if ctx.cancel?.isSet == true { ctx.cancelled = true; return 0 }
            guard let ptr else { return n }
            // Never more than the request may deliver: an endless body stops here.
            var take = n
            if let limit = ctx.limit, ctx.written + Int64(n) > limit {
                take = Int(max(0, limit - ctx.written))
                ctx.overflow = true
            }
            if let room = ctx.sink.room, Int64(take) > room {
                take = Int(max(0, room))
                ctx.overflow = true
            }
            do {
                if take > 0 { try ctx.sink.write(UnsafeRawBufferPointer(start: ptr, count: take)) }
            } catch let rejection as ContentRejected {
                ctx.rejected = rejection.reason
                return 0
            } catch {
                ctx.failure = "\(error)"
                ctx.localError = true
                return 0
            }
            ctx.written += Int64(take)
            // Reported here rather than from the progress callback: libcurl calls that only
            // between batches of reads, which with 512 KiB buffers can be seconds apart.
            // Once per MiB is plenty for a display and cheap on the hot path; a slow or small
            // file (below a bandwidth limit) reports at least every quarter second instead.
            if ctx.progress != nil, ctx.written - ctx.reported >= 1 << 20 || monotonicSeconds() - ctx.reportedAt >= 0.25 {
                ctx.reported = ctx.written
                ctx.reportedAt = monotonicSeconds()
                ctx.progress?(ctx.written)
            }
            ctx.limiter?.consume(take)
            return ctx.overflow ? 0 : n
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
        if let failure = ctx.failure { return ctx.localError ? .localFailure(failure) : .networkError(failure) }
        if let rejected = ctx.rejected { return .badContent(rejected) }
        if ctx.rangeIgnored { return .rangeIgnored }
        if code == CURLE_ABORTED_BY_CALLBACK || ctx.cancelled { return .cancelled }
        if ctx.overflow { return .tooLong(status: status) }
        if status == 416 {
            let total = ctx.headers.values["content-range"].flatMap { $0.split(separator: "/").last.flatMap { Int64($0) } }
            return .rangeNotSatisfiable(totalSize: total)
        }
        if code != CURLE_OK {
            if status >= 300 && code == CURLE_WRITE_ERROR { return .httpError(status: status, headers: ctx.headers.values) }
            let cannotConnect = [CURLE_COULDNT_CONNECT, CURLE_COULDNT_RESOLVE_HOST, CURLE_COULDNT_RESOLVE_PROXY].contains(code)
            return .networkError(curlMessage(code), cannotConnect: cannotConnect)
        }
        if status == 200 || status == 206 { return .completed(status: status) }
        return .httpError(status: status, headers: ctx.headers.values)
    }
}

extension HubClient {
    /// Resolves a Hub file to the URL its bytes come from now, following same-origin redirects
    /// with the token and stopping at a redirect to another origin (huggingface-hub.md §5).
    ///
    /// A proxy that keeps everything on one host (a redirect to a path on the endpoint's own
    /// origin) may end in a plain `200` without the Hub's headers: the commit and the identity
    /// then come from the redirects before it, or, when `revision` is a commit (a lock), from
    /// that. Only when neither says which commit this is does the endpoint not look like a Hub.
    public func downloadSource(_ ref: HubReference, revision: String) throws -> DownloadSource {
        var url = ref.resolveURL(endpoint: endpoint, revision: revision)
        var stated = (commit: String?.none, etag: String?.none, size: Int64?.none)
        for _ in 0..<20 {
            let r = try send(HTTPRequest(method: "HEAD", url: url))
            let etag = r.header("x-linked-etag").map(normalizeETag)
            let size = r.header("x-linked-size").flatMap { Int64($0) }
            if (300..<400).contains(r.status), let target = r.redirectURL {
                // Checked here as well as by libcurl: the file host's URL comes from the Hub's
                // answer, and a redirect to gopher://, dict:// or file:// must end the job with
                // a clear reason rather than look like a network hiccup.
                guard isAllowedScheme(target) else { throw HubError.badRedirect(url: displayURL(url), target: displayURL(target)) }
                stated = (r.header("x-repo-commit") ?? stated.commit, etag ?? stated.etag, size ?? stated.size)
                if origin(of: target) == origin(of: url) || origin(of: target) == origin(of: endpoint) {
                    url = target
                    continue
                }
                return DownloadSource(url: target, sendToken: false, commit: stated.commit, linkedETag: stated.etag, linkedSize: stated.size)
            }
            guard r.status == 200 else { throw failure(r, url: url, repo: ref.repo, revision: revision, path: ref.path) }
            let pinned = isCommitID(revision) ? revision : nil
            guard let commit = r.header("x-repo-commit") ?? stated.commit ?? pinned else { throw HubError.notAHub(url: url) }
            // A plain ETag is the Hub's identity only on the Hub's own reply: after a redirect a
            // proxy's or a file server's ETag says nothing about the content.
            let plainETag = stated.commit == nil && r.header("x-repo-commit") != nil ? r.header("etag").map(normalizeETag) : nil
            return DownloadSource(url: url, sendToken: headers(for: url).count > 0, commit: commit,
                                  linkedETag: etag ?? stated.etag ?? plainETag,
                                  linkedSize: size ?? stated.size ?? r.header("content-length").flatMap { Int64($0) })
        }
        throw HubError.malformed(url: url, message: "more than 20 redirects")
    }

    /// The Authorization header for a download URL, when it may carry the token.
    public func authorization(for url: String) -> [(String, String)] { headers(for: url) }
}

/// True for a full 40-hex commit id (a pinned revision, as a lock gives).
func isCommitID(_ value: String) -> Bool {
    value.count == 40 && value.utf8.allSatisfy { (48...57).contains($0) || (97...102).contains($0) }
}

/// Drops a leading `W/` and the quotes.
public func normalizeETag(_ value: String) -> String {
    var v = value.trimmingCharacters(in: .whitespaces)
    if v.hasPrefix("W/") { v.removeFirst(2) }
    return v.trimmingCharacters(in: CharacterSet(charactersIn: "\"")).lowercased()
}

/// A coarse monotonic clock (the vDSO answers without a system call): cheap enough for every
/// write callback.
func monotonicSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}
