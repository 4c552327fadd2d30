import Foundation
import Planner
import State

/// A file on the Hub named by a model definition's URL.
public struct HubReference: Hashable, Sendable {
    public enum RepoType: String, Sendable { case model, dataset, space }
    public var type: RepoType
    /// `org/name`
    public var repo: String
    public var revision: String
    /// Path inside the repo, `/`-separated.
    public var path: String

    /// Parses `https://huggingface.co/ORG/REPO/resolve/REV/PATH` (also `/blob/`, `datasets/…`,
    /// `?download=true`). Any host is accepted: the request is rebuilt on the configured endpoint.
    public init?(url: String) {
        guard var c = URLComponents(string: url), c.scheme == "https" || c.scheme == "http" else { return nil }
        c.query = nil
        var parts = c.percentEncodedPath.split(separator: "/").map { $0.removingPercentEncoding ?? String($0) }
        var type = RepoType.model
        if let first = parts.first, first == "datasets" || first == "spaces" {
            type = first == "datasets" ? .dataset : .space
            parts.removeFirst()
        }
        guard parts.count >= 5, parts[2] == "resolve" || parts[2] == "blob" else { return nil }
        self.type = type
        repo = parts[0] + "/" + parts[1]
        revision = parts[3]
        path = parts[4...].joined(separator: "/")
    }

    public init(type: RepoType = .model, repo: String, revision: String, path: String) {
        self.type = type
        self.repo = repo
        self.revision = revision
        self.path = path
    }

    var apiPrefix: String { type == .model ? "models" : type == .dataset ? "datasets" : "spaces" }
    var resolvePrefix: String { type == .model ? "" : "\(apiPrefix)/" }

    /// `{endpoint}/{repo}/resolve/{revision}/{path}` with each segment percent-encoded.
    public func resolveURL(endpoint: String, revision: String? = nil) -> String {
        "\(endpoint)/\(resolvePrefix)\(repo)/resolve/\(encodeSegment(revision ?? self.revision))/"
            + path.split(separator: "/").map { encodeSegment(String($0)) }.joined(separator: "/")
    }
}

func encodeSegment(_ s: String) -> String {
    var allowed = CharacterSet.alphanumerics
    allowed.insert(charactersIn: "-._~")
    return s.addingPercentEncoding(withAllowedCharacters: allowed) ?? s
}

/// Errors of the Hub stage, in words a user can act on (huggingface-hub.md §7).
public enum HubError: Error, Equatable, CustomStringConvertible {
    case authenticationRequired(repo: String)
    case invalidToken
    case repoNotFound(repo: String)
    /// `page`: the repo's page on the Hub, where its terms are accepted.
    case gated(repo: String, hasToken: Bool, page: String)
    case revisionNotFound(repo: String, revision: String)
    case entryNotFound(repo: String, path: String, revision: String)
    case notAHub(url: String)
    case server(status: Int, url: String, requestID: String?)
    case unreachable(endpoint: String, message: String)
    case malformed(url: String, message: String)
    case badRedirect(url: String, target: String)
    /// The host failed to connect several times in a row; this run does not try it again.
    case hostDown(origin: String, failures: Int)

    public var description: String {
        switch self {
        case .authenticationRequired(let repo):
            return "\(repo): the Hub answered 401: the repo does not exist, is private, or is gated. If you should have access, set HF_TOKEN (or log in so $HF_HOME/token exists)."
        case .invalidToken:
            return "the Hub rejected the token (401 Invalid credentials). Check HF_TOKEN or $HF_HOME/token; it was not printed."
        case .repoNotFound(let repo):
            return "\(repo): repository not found, or the token has no access to it (404). Check the repo name in the definition or manifest."
        case .gated(let repo, let hasToken, let page):
            return hasToken
                ? "\(repo) is gated and this token's account has not been granted access (403). Accept the terms on \(page), then retry."
                : "\(repo) is gated. Accept its terms on \(page), then set HF_TOKEN to a token of that account."
        case .revisionNotFound(let repo, let revision):
            return "\(repo): revision '\(shortRevision(revision))' does not exist (404). Fix the revision in the URL or lock file; when it came from cached metadata, 'wgpm plan --refresh' asks the Hub again."
        case .entryNotFound(let repo, let path, let revision):
            return "\(repo): file '\(path)' does not exist at \(shortRevision(revision)) (404). The definition or manifest names a file the repo does not have."
        case .notAHub(let url):
            return "\(url) did not answer like a Hugging Face Hub (no X-Repo-Commit / not JSON). Check hub.endpoint / HF_ENDPOINT."
        case .server(let status, let url, let requestID):
            return "the Hub kept failing with HTTP \(status) for \(url)" + (requestID.map { " (request id \($0))" } ?? "") + "; try again later."
        case .unreachable(let endpoint, let message):
            return "cannot reach the Hub at \(endpoint): \(message). Check the network, HF_ENDPOINT, or use a lock file to plan offline."
        case .hostDown(let origin, let failures):
            return "\(origin) could not be reached \(failures) times in a row, so this run stops trying it; check the network or HF_ENDPOINT"
        case .malformed(let url, let message):
            return "\(url): unexpected answer from the Hub: \(message)"
        case .badRedirect(let url, let target):
            return "\(url) redirected to \(target), which is not http or https; wgpm refuses it. Check hub.endpoint / HF_ENDPOINT: this is not how the Hub answers."
        }
    }
}

/// Waits between retries; tests pass one that records instead of sleeping.
public protocol Sleeper: Sendable {
    func sleep(seconds: Double)
}

public struct RealSleeper: Sleeper {
    public init() {}
    public func sleep(seconds: Double) { Thread.sleep(forTimeInterval: seconds) }
}

/// How long to wait before retry number `attempt` (0-based), per huggingface-hub.md §8.
public func retryDelay(attempt: Int, response: HTTPResponse?, jitter: Double) -> Double {
    if let r = response {
        // Server-given numbers are clamped before any arithmetic: a huge `t` must not trap, and
        // `nan` or a negative wait must not reach the sleeper.
        if let limit = r.header("ratelimit"), let params = parseRateLimit(limit), params["r"] == 0, let t = params["t"], t >= 0 {
            return min(Double(t) + 1, 300)
        }
        if let after = r.header("retry-after") {
            if let secs = Double(after.trimmingCharacters(in: .whitespaces)), secs.isFinite { return min(max(secs, 0) + 1, 300) }
            let f = DateFormatter()
            f.locale = Locale(identifier: "en_US_POSIX")
            f.dateFormat = "EEE, dd MMM yyyy HH:mm:ss zzz"
            if let date = f.date(from: after) { return min(max(date.timeIntervalSinceNow, 0) + 1, 300) }
        }
    }
    let base = min(pow(2.0, Double(attempt)), 8)
    return base * (1 + jitter * 0.5)
}

/// `"resolvers";r=0;t=12` → ["r": 0, "t": 12]
func parseRateLimit(_ value: String) -> [String: Int]? {
    var out: [String: Int] = [:]
    for part in value.split(separator: ";") {
        let kv = part.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
        if kv.count == 2, let n = Int(kv[1]) { out[kv[0]] = n }
    }
    return out.isEmpty ? nil : out
}

func isRetryable(status: Int) -> Bool { [408, 429, 500, 502, 503, 504].contains(status) }

/// Reads metadata from a Hugging Face Hub (or a mirror, or the fake Hub in tests).
public struct HubClient: Sendable {
    public var endpoint: String
    var token: String?
    public var transport: HTTPTransport
    public var sleeper: Sleeper
    public var maxAttempts: Int
    /// Called with a human-readable line when the client waits (429, 5xx).
    public var onWait: (@Sendable (String) -> Void)?
    /// Shared by every copy of this client (each queue worker's): hosts given up on this run.
    public var breaker = HostBreaker()

    public init(endpoint: String, token: String?, transport: HTTPTransport = CurlTransport(),
                sleeper: Sleeper = RealSleeper(), maxAttempts: Int = 5, onWait: (@Sendable (String) -> Void)? = nil) {
        self.endpoint = endpoint
        self.token = token
        self.transport = transport
        self.sleeper = sleeper
        self.maxAttempts = maxAttempts
        self.onWait = onWait
    }

    /// Headers for a URL: the token goes only to the endpoint's own origin.
    func headers(for url: String) -> [(String, String)] {
        guard let token, let o = origin(of: url), o == origin(of: endpoint) else { return [] }
        return [("Authorization", "Bearer \(token)")]
    }

    /// Sends with retries on 408/429/5xx and network errors. A host that failed to connect
    /// `breaker.threshold` times in a row (in any request of this run) is not asked again.
    func send(_ request: HTTPRequest) throws -> HTTPResponse {
        var req = request
        req.headers += headers(for: request.url)
        let host = origin(of: request.url) ?? request.url
        var attempt = 0
        while true {
            try breaker.check(host)
            do {
                let response = try transport.send(req)
                breaker.recordAnswer(host)
                if isRetryable(status: response.status), attempt + 1 < maxAttempts {
                    let wait = retryDelay(attempt: attempt, response: response, jitter: Double.random(in: 0...1))
                    onWait?("the Hub answered \(response.status); retrying in \(String(format: "%.0f", wait)) s")
                    sleeper.sleep(seconds: wait)
                    attempt += 1
                    continue
                }
                return response
            } catch let error as TransportError {
                if error.cannotConnect && breaker.recordFailure(host) {
                    throw HubError.hostDown(origin: displayURL(host), failures: breaker.threshold)
                }
                guard attempt + 1 < maxAttempts else {
                    throw HubError.unreachable(endpoint: endpoint, message: error.message)
                }
                let wait = retryDelay(attempt: attempt, response: nil, jitter: Double.random(in: 0...1))
                onWait?("the Hub did not answer (\(lowercasedFirstWord(error.message.replacingOccurrences(of: "network error: ", with: "")))); retrying in \(String(format: "%.0f", wait)) s")
                sleeper.sleep(seconds: wait)
                attempt += 1
            }
        }
    }

    /// Maps a failed response to the error a user can act on.
    func failure(_ r: HTTPResponse, url: String, repo: String, revision: String, path: String?) -> HubError {
        let code = r.header("x-error-code")
        let message = r.header("x-error-message") ?? ""
        switch (r.status, code) {
        case (_, "GatedRepo"?): return .gated(repo: repo, hasToken: token != nil, page: "\(endpoint)/\(repo)")
        case (_, "RepoNotFound"?): return .repoNotFound(repo: repo)
        case (_, "RevisionNotFound"?): return .revisionNotFound(repo: repo, revision: revision)
        case (_, "EntryNotFound"?): return .entryNotFound(repo: repo, path: path ?? "?", revision: revision)
        case (401, _):
            if message.contains("Invalid credentials") { return .invalidToken }
            return .authenticationRequired(repo: repo)
        case (403, _): return .gated(repo: repo, hasToken: token != nil, page: "\(endpoint)/\(repo)")
        case (404, _): return path.map { .entryNotFound(repo: repo, path: $0, revision: revision) } ?? .repoNotFound(repo: repo)
        default: return .server(status: r.status, url: url, requestID: r.header("x-request-id"))
        }
    }

    /// The commit a revision (branch, tag or commit) resolves to.
    public func resolveCommit(_ ref: HubReference) throws -> String { try resolveRevision(ref).commit }

    /// The commit a revision resolves to, and whether the repo is gated (its metadata is
    /// public, its files need accepted terms).
    public func resolveRevision(_ ref: HubReference) throws -> (commit: String, gated: Bool) {
        let url = "\(endpoint)/api/\(ref.apiPrefix)/\(ref.repo)/revision/\(encodeSegment(ref.revision))"
        let r = try send(HTTPRequest(method: "GET", url: url))
        guard r.status == 200 else { throw failure(r, url: url, repo: ref.repo, revision: ref.revision, path: nil) }
        guard let json = try? JSONSerialization.jsonObject(with: r.body) as? [String: Any] else {
            throw HubError.notAHub(url: url)
        }
        guard let sha = json["sha"] as? String, sha.count == 40 else {
            throw HubError.malformed(url: url, message: "no commit id ('sha') in the repo info")
        }
        // "gated" is false, "auto" or "manual".
        let gated = (json["gated"] as? String).map { !$0.isEmpty } ?? (json["gated"] as? Bool ?? false)
        return (sha, gated)
    }

    /// Throws what the Hub says when this client may not download `path` of a gated repo (a
    /// HEAD of its resolve URL, as a download would start): found at plan time, not by apply.
    public func checkDownloadAccess(_ ref: HubReference, commit: String, path: String) throws {
        var file = ref
        file.path = path
        let url = file.resolveURL(endpoint: endpoint, revision: commit)
        let r = try send(HTTPRequest(method: "HEAD", url: url))
        guard r.status == 401 || r.status == 403 else { return }
        throw failure(r, url: url, repo: ref.repo, revision: commit, path: path)
    }

    /// Size and hash of each named path at a commit (paths-info API, in batches).
    /// A path the repo does not have is an error naming it.
    public func fileInfo(_ ref: HubReference, commit: String, paths: [String]) throws -> [HubFileRecord] {
        var out: [HubFileRecord] = []
        let url = "\(endpoint)/api/\(ref.apiPrefix)/\(ref.repo)/paths-info/\(commit)"
        for batch in stride(from: 0, to: paths.count, by: 100).map({ Array(paths[$0..<min($0 + 100, paths.count)]) }) {
            var form = URLComponents()
            form.queryItems = batch.map { URLQueryItem(name: "paths", value: $0) } + [URLQueryItem(name: "expand", value: "false")]
            let body = Data((form.percentEncodedQuery ?? "").replacingOccurrences(of: "+", with: "%2B").utf8)
            let r = try send(HTTPRequest(method: "POST", url: url,
                                         headers: [("Content-Type", "application/x-www-form-urlencoded")], body: body))
            guard r.status == 200 else { throw failure(r, url: url, repo: ref.repo, revision: commit, path: nil) }
            guard let entries = try? JSONSerialization.jsonObject(with: r.body) as? [[String: Any]] else {
                throw HubError.notAHub(url: url)
            }
            var found: [String: HubFileRecord] = [:]
            for e in entries where (e["type"] as? String) == "file" {
                guard let path = e["path"] as? String, let number = e["size"] as? NSNumber else { continue }
                // A size is a whole number of bytes that fits: anything else is not a Hub answer.
                let value = number.doubleValue
                guard value >= 0, value < 9e18, value == value.rounded() else {
                    throw HubError.malformed(url: url, message: "the size of \(path) is not a byte count (\(number))")
                }
                let size = number.int64Value
                let lfs = e["lfs"] as? [String: Any]
                let sha256 = (lfs?["oid"] as? String).map { $0.lowercased() }
                found[path] = HubFileRecord(path: path, size: size, sha256: sha256,
                                          gitSHA1: sha256 == nil ? (e["oid"] as? String)?.lowercased() : nil)
            }
            for p in batch {
                guard let info = found[p] else { throw HubError.entryNotFound(repo: ref.repo, path: p, revision: commit) }
                out.append(info)
            }
        }
        return out
    }
}

/// A commit id as the plan shows it (7 hex digits); a branch or tag name as it is.
func shortRevision(_ revision: String) -> String {
    revision.count == 40 && revision.allSatisfy(\.isHexDigit) ? String(revision.prefix(7)) : revision
}
