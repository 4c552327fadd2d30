import CCurl
import Foundation

/// Settings every libcurl transfer of wgpm shares, in one place so that no transfer can miss one.
///
/// Only http and https, for the first request and for every redirect hop (libcurl would
/// otherwise follow a `Location: gopher://…`, `dict://…` or `file:///dev/zero` from a hostile
/// server to a local port or file). At most `maxRedirects` hops when redirects are followed.
/// No compression: sizes and hashes are of the bytes as stored.
public struct CurlOptions {
    static let allowedProtocols = "http,https"
    public static let maxRedirects = 10

    var connectTimeout: Int
    var lowSpeedTime: Int
    var userAgent: String

    /// Applies the shared options and the request headers to `h`; returns the header list,
    /// which the caller frees after the transfer.
    func apply(to h: UnsafeMutableRawPointer, url: String, headers: [(String, String)],
               followRedirects: Bool) -> UnsafeMutablePointer<curl_slist>? {
        _ = ccurl_setopt_str(h, CURLOPT_URL, url)
        _ = ccurl_setopt_str(h, CURLOPT_PROTOCOLS_STR, Self.allowedProtocols)
        _ = ccurl_setopt_str(h, CURLOPT_REDIR_PROTOCOLS_STR, Self.allowedProtocols)
        _ = ccurl_setopt_long(h, CURLOPT_NOSIGNAL, 1)
        _ = ccurl_setopt_long(h, CURLOPT_FOLLOWLOCATION, followRedirects ? 1 : 0)
        _ = ccurl_setopt_long(h, CURLOPT_MAXREDIRS, Self.maxRedirects)
        _ = ccurl_setopt_long(h, CURLOPT_CONNECTTIMEOUT, connectTimeout)
        _ = ccurl_setopt_long(h, CURLOPT_LOW_SPEED_LIMIT, 1024)
        _ = ccurl_setopt_long(h, CURLOPT_LOW_SPEED_TIME, lowSpeedTime)
        _ = ccurl_setopt_long(h, CURLOPT_BUFFERSIZE, 512 * 1024)
        _ = ccurl_setopt_str(h, CURLOPT_USERAGENT, userAgent)
        var list: UnsafeMutablePointer<curl_slist>?
        for (name, value) in headers + [("Accept-Encoding", "identity")] {
            list = curl_slist_append(list, "\(name): \(value)")
        }
        _ = ccurl_setopt_slist(h, CURLOPT_HTTPHEADER, list)
        return list
    }
}

/// Collects response headers line by line; a new status line (after a redirect or a 100)
/// starts over, so the headers are those of the last response.
struct HeaderLines {
    private(set) var values: [String: String] = [:]

    mutating func take(_ ptr: UnsafeMutablePointer<CChar>?, _ n: Int) {
        guard let ptr else { return }
        let line = String(decoding: UnsafeRawBufferPointer(start: ptr, count: n), as: UTF8.self)
        if line.hasPrefix("HTTP/") { values = [:]; return }
        guard let colon = line.firstIndex(of: ":") else { return }
        let name = line[..<colon].trimmingCharacters(in: .whitespaces).lowercased()
        values[name] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespacesAndNewlines)
    }
}

/// libcurl's error in words a user can act on. A few codes read wrongly out of context:
/// a response header over libcurl's limit is reported as "Out of memory", and a refused
/// scheme as "Unsupported protocol".
func curlMessage(_ code: CURLcode) -> String {
    switch code {
    case CURLE_OUT_OF_MEMORY: return "the server sent a response header larger than wgpm accepts"
    case CURLE_UNSUPPORTED_PROTOCOL: return "the server redirected to a scheme other than http or https, which wgpm refuses"
    case CURLE_TOO_MANY_REDIRECTS: return "the server redirected more than \(CurlOptions.maxRedirects) times"
    default: return String(cString: curl_easy_strerror(code))
    }
}

/// A URL as it may appear in messages: scheme, host, port and path. The query of a signed
/// file-host URL is a credential of sorts and is left out.
public func displayURL(_ url: String) -> String {
    guard var c = URLComponents(string: url), c.host != nil else {
        return url.split(separator: "?", maxSplits: 1).first.map(String.init) ?? url
    }
    c.query = nil
    c.fragment = nil
    c.user = nil
    c.password = nil
    return c.string ?? url
}

/// True for the schemes any wgpm transfer may use.
public func isAllowedScheme(_ url: String) -> Bool {
    guard let scheme = URLComponents(string: url)?.scheme?.lowercased() else { return false }
    return scheme == "http" || scheme == "https"
}

/// Large buffers (128 KiB and up) are mapped and unmapped by malloc, never kept in a thread's
/// heap: peak memory stays bounded across many files and connections. Call once at start.
public func keepLargeBuffersUnmappedWhenFreed() {
    _ = wgpm_fix_mmap_threshold(128 << 10)
}

/// stdout line by line even into a file or pipe, so that with `> log 2>&1` each line lands in
/// order with stderr's (progress, errors).
public func lineBufferStandardOutput() {
    wgpm_line_buffer_stdout()
}
