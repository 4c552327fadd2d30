import CCurl
import Foundation

/// One HTTP request. Redirects are never followed by the transport: the Hub client decides
/// where the token may go (huggingface-hub.md §5, §9).
public struct HTTPRequest: Sendable {
    public var method: String
    public var url: String
    public var headers: [(String, String)]
    public var body: Data?

    public init(method: String, url: String, headers: [(String, String)] = [], body: Data? = nil) {
        self.method = method
        self.url = url
        self.headers = headers
        self.body = body
    }
}

public struct HTTPResponse: Sendable {
    public var status: Int
    /// Header names lower-cased; the last value wins.
    public var headers: [String: String]
    public var body: Data
    /// The absolute target of a 3xx (`Location` resolved against the request URL).
    public var redirectURL: String?

    public init(status: Int, headers: [String: String] = [:], body: Data = Data(), redirectURL: String? = nil) {
        self.status = status
        self.headers = headers
        self.body = body
        self.redirectURL = redirectURL
    }

    public func header(_ name: String) -> String? { headers[name.lowercased()] }
}

/// A network-level failure: nothing usable came back.
public struct TransportError: Error, Sendable, CustomStringConvertible {
    public var url: String
    public var message: String
    /// No connection was made (refused, no such host, connect timed out): the host is down or
    /// unreachable, as opposed to a reply that broke off.
    public var cannotConnect = false
    public var description: String { "\(message) (\(url))" }
}

/// Sends one request and returns the response without following redirects.
public protocol HTTPTransport: Sendable {
    func send(_ request: HTTPRequest) throws -> HTTPResponse
}

/// libcurl, one easy handle per request, blocking: call it off the cooperative pool.
public struct CurlTransport: HTTPTransport {
    public var connectTimeout: Int
    /// Abort when slower than 1 KB/s for this many seconds.
    public var lowSpeedTime: Int
    public var userAgent: String

    public init(connectTimeout: Int = 20, lowSpeedTime: Int = 60, userAgent: String = "wgpm/0.1") {
        self.connectTimeout = connectTimeout
        self.lowSpeedTime = lowSpeedTime
        self.userAgent = userAgent
        _ = Self.globalInit
    }

    static let globalInit: Bool = {
        curl_global_init(Int(CURL_GLOBAL_DEFAULT))
        return true
    }()

    final class Sink {
        var body = Data()
        var headers = HeaderLines()
        let limit: Int
        init(limit: Int) { self.limit = limit }
    }

    public func send(_ request: HTTPRequest) throws -> HTTPResponse {
        guard isAllowedScheme(request.url) else {
            throw TransportError(url: displayURL(request.url), message: "only http and https URLs are fetched")
        }
        guard let h = curl_easy_init() else { throw TransportError(url: displayURL(request.url), message: "libcurl could not start") }
        defer { curl_easy_cleanup(h) }
        let sink = Sink(limit: 256 << 20)
        let opaque = Unmanaged.passRetained(sink).toOpaque()
        defer { Unmanaged<Sink>.fromOpaque(opaque).release() }

        let options = CurlOptions(connectTimeout: connectTimeout, lowSpeedTime: lowSpeedTime, userAgent: userAgent)
        let list = options.apply(to: h, url: request.url, headers: request.headers, followRedirects: false)
        defer { curl_slist_free_all(list) }
        switch request.method {
        case "HEAD": _ = ccurl_setopt_long(h, CURLOPT_NOBODY, 1)
        case "GET": break
        default: _ = ccurl_setopt_str(h, CURLOPT_CUSTOMREQUEST, request.method)
        }
        var bodyCopy: [CChar]?
        if let body = request.body {
            bodyCopy = body.map { CChar(bitPattern: $0) }
            _ = ccurl_setopt_off(h, CURLOPT_POSTFIELDSIZE_LARGE, body.count)
        }
        _ = ccurl_setopt_write_cb(h, CURLOPT_WRITEFUNCTION) { ptr, size, count, ctx in
            let sink = Unmanaged<Sink>.fromOpaque(ctx!).takeUnretainedValue()
            let n = size * count
            if sink.body.count + n > sink.limit { return 0 }
            if let ptr { sink.body.append(UnsafeRawPointer(ptr).assumingMemoryBound(to: UInt8.self), count: n) }
            return n
        }
        _ = ccurl_setopt_ptr(h, CURLOPT_WRITEDATA, opaque)
        _ = ccurl_setopt_write_cb(h, CURLOPT_HEADERFUNCTION) { ptr, size, count, ctx in
            Unmanaged<Sink>.fromOpaque(ctx!).takeUnretainedValue().headers.take(ptr, size * count)
            return size * count
        }
        _ = ccurl_setopt_ptr(h, CURLOPT_HEADERDATA, opaque)

        let code: CURLcode = bodyCopy.map { copy in
            copy.withUnsafeBufferPointer { buf in
                _ = ccurl_setopt_ptr(h, CURLOPT_POSTFIELDS, UnsafeMutableRawPointer(mutating: buf.baseAddress))
                return curl_easy_perform(h)
            }
        } ?? curl_easy_perform(h)
        guard code == CURLE_OK else {
            let message = code == CURLE_WRITE_ERROR ? "the answer was larger than \(sink.limit >> 20) MiB" : curlMessage(code)
            var connected = 0
            _ = ccurl_getinfo_long(h, CURLINFO_RESPONSE_CODE, &connected)
            let cannotConnect = [CURLE_COULDNT_CONNECT, CURLE_COULDNT_RESOLVE_HOST, CURLE_COULDNT_RESOLVE_PROXY].contains(code)
                || (code == CURLE_OPERATION_TIMEDOUT && connected == 0 && sink.headers.values.isEmpty)
            throw TransportError(url: displayURL(request.url), message: "network error: \(message)", cannotConnect: cannotConnect)
        }
        var status = 0
        _ = ccurl_getinfo_long(h, CURLINFO_RESPONSE_CODE, &status)
        var redirect: UnsafeMutablePointer<CChar>?
        _ = ccurl_getinfo_str(h, CURLINFO_REDIRECT_URL, &redirect)
        return HTTPResponse(status: status, headers: sink.headers.values, body: sink.body,
                            redirectURL: redirect.map { String(cString: $0) })
    }
}

/// Scheme, host and port of a URL, for deciding where the token may go.
public func origin(of url: String) -> String? {
    guard let c = URLComponents(string: url), let scheme = c.scheme?.lowercased(), let host = c.host?.lowercased() else {
        return nil
    }
    let port = c.port ?? (scheme == "https" ? 443 : scheme == "http" ? 80 : 0)
    return "\(scheme)://\(host):\(port)"
}
