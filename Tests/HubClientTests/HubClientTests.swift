import Foundation
import State
import Testing
import TestSupport
@testable import HubClient

func withHub(_ config: [String: Any] = ["tokens": ["hf_good"]], _ body: (FakeHub, TempDir) throws -> Void) throws {
    let dir = try TempDir("hub")
    defer { dir.remove() }
    let hub = try FakeHub(root: dir.file("repos"), config: config)
    defer { hub.stop() }
    try hub.addFile(repo: "org/model", path: "weights/big.safetensors", Data(repeating: 7, count: 3000))
    try hub.addFile(repo: "org/model", path: "config.json", Data("{\"a\": 1}\n".utf8))
    try body(hub, dir)
}

@Test func parsesDefinitionURLs() throws {
    let r = try #require(HubReference(url: "https://huggingface.co/DeepBeepMeep/Wan2.1/resolve/main/umt5-xxl/spiece.model"))
    #expect(r.repo == "DeepBeepMeep/Wan2.1" && r.revision == "main" && r.path == "umt5-xxl/spiece.model" && r.type == .model)
    let blob = try #require(HubReference(url: "https://huggingface.co/datasets/o/d/blob/refs%2Fpr%2F1/a%20b.bin?download=true"))
    #expect(blob.type == .dataset && blob.revision == "refs/pr/1" && blob.path == "a b.bin")
    #expect(blob.resolveURL(endpoint: "http://127.0.0.1:9") == "http://127.0.0.1:9/datasets/o/d/resolve/refs%2Fpr%2F1/a%20b.bin")
    #expect(HubReference(url: "https://civitai.com/api/download/models/1") == nil)
}

@Test func readsCommitAndIdentities() throws {
    try withHub { hub, _ in
        let client = HubClient(endpoint: hub.hubURL, token: nil, sleeper: RecordingSleeper())
        let ref = HubReference(repo: "org/model", revision: "main", path: "")
        let commit = try client.resolveCommit(ref)
        #expect(commit.count == 40)
        let files = try client.fileInfo(ref, commit: commit, paths: ["weights/big.safetensors", "config.json"])
        let big = try #require(files.first { $0.path == "weights/big.safetensors" })
        #expect(big.size == 3000)
        #expect(big.sha256 == "2c4ac30d0c7c3fcc5f7b8bd21ea5bb73f3e83f8b4a5ffd4a6ab8bdc9a39d4f3a" || big.sha256?.count == 64)
        #expect(big.gitSHA1 == nil)
        let cfg = try #require(files.first { $0.path == "config.json" })
        // git blob sha1 of "{\"a\": 1}\n", as `git hash-object` prints it.
        #expect(cfg.gitSHA1 == gitBlobSHA1(Data("{\"a\": 1}\n".utf8)))
        #expect(cfg.sha256 == nil)
        #expect(throws: HubError.entryNotFound(repo: "org/model", path: "nope.bin", revision: commit)) {
            try client.fileInfo(ref, commit: commit, paths: ["nope.bin"])
        }
    }
}

@Test func reportsAccessErrorsInPlainWords() throws {
    let config: [String: Any] = ["tokens": ["hf_good", "hf_other"],
                                 "repos": ["org/private": ["private": true, "granted": ["hf_good"]],
                                           "org/gated": ["gated": "manual", "granted": ["hf_good"]]]]
    try withHub(config) { hub, _ in
        try hub.addFile(repo: "org/private", path: "a.bin", Data([1]))
        let anon = HubClient(endpoint: hub.hubURL, token: nil, sleeper: RecordingSleeper())
        let other = HubClient(endpoint: hub.hubURL, token: "hf_other", sleeper: RecordingSleeper())
        let bad = HubClient(endpoint: hub.hubURL, token: "hf_bad", sleeper: RecordingSleeper())
        let good = HubClient(endpoint: hub.hubURL, token: "hf_good", sleeper: RecordingSleeper())
        let priv = HubReference(repo: "org/private", revision: "main", path: "a.bin")
        #expect(throws: HubError.authenticationRequired(repo: "org/private")) { try anon.resolveCommit(priv) }
        #expect(throws: HubError.repoNotFound(repo: "org/private")) { try other.resolveCommit(priv) }
        #expect(throws: HubError.invalidToken) { try bad.resolveCommit(priv) }
        #expect(try good.resolveCommit(priv).count == 40)
        let missing = HubReference(repo: "org/none", revision: "main", path: "")
        #expect(throws: HubError.repoNotFound(repo: "org/none")) { try other.resolveCommit(missing) }
        let rev = HubReference(repo: "org/model", revision: "v9", path: "")
        #expect(throws: HubError.revisionNotFound(repo: "org/model", revision: "v9")) { try anon.resolveCommit(rev) }
        for error in [HubError.authenticationRequired(repo: "org/private"), .invalidToken, .gated(repo: "o/g", hasToken: true, page: "https://huggingface.co/o/g")] {
            #expect(!error.description.contains("hf_"), "messages never carry a token")
        }
    }
}

@Test func retriesRateLimitsAndServerErrors() throws {
    let config: [String: Any] = ["faults": [
        ["listener": "hub", "path_contains": "/revision/", "count": 1, "status": 429,
         "headers": ["RateLimit": "\"api\";r=0;t=7", "RateLimit-Policy": "\"fixed window\";\"api\";q=500;w=300"]],
        ["listener": "hub", "path_contains": "/revision/", "count": 1, "status": 429, "headers": ["Retry-After": "3"]],
        ["listener": "hub", "path_contains": "/revision/", "count": 1, "status": 503],
    ]]
    try withHub(config) { hub, _ in
        let sleeper = RecordingSleeper()
        let client = HubClient(endpoint: hub.hubURL, token: nil, sleeper: sleeper)
        let commit = try client.resolveCommit(HubReference(repo: "org/model", revision: "main", path: ""))
        #expect(commit.count == 40)
        #expect(sleeper.waits.count == 3)
        #expect(sleeper.waits[0] == 8, "RateLimit r=0;t=7 waits t+1")
        #expect(sleeper.waits[1] == 4, "Retry-After 3 waits 3+1")
        #expect(sleeper.waits[2] >= 4 && sleeper.waits[2] <= 6, "third attempt backs off 4 s plus jitter")
        let revisionRequests = hub.requests().filter { $0.path.contains("/revision/") }
        #expect(revisionRequests.map(\.status) == [429, 429, 503, 200])
    }
}

@Test func persistentServerErrorGivesUp() throws {
    let config: [String: Any] = ["faults": [["listener": "hub", "path_contains": "/revision/", "count": 99, "status": 500]]]
    try withHub(config) { hub, _ in
        let sleeper = RecordingSleeper()
        let client = HubClient(endpoint: hub.hubURL, token: nil, sleeper: sleeper)
        do {
            _ = try client.resolveCommit(HubReference(repo: "org/model", revision: "main", path: ""))
            Issue.record("expected an error")
        } catch let error as HubError {
            guard case .server(500, _, _) = error else { Issue.record("got \(error)"); return }
        }
        #expect(sleeper.waits.count == 4)
        #expect(hub.requests().count == 5)
    }
}

@Test func tokenGoesOnlyToTheHubOrigin() throws {
    let client = HubClient(endpoint: "http://127.0.0.1:8080", token: "hf_secret")
    #expect(client.headers(for: "http://127.0.0.1:8080/api/models/a/b").count == 1)
    #expect(client.headers(for: "http://localhost:8080/lfs/x").isEmpty)
    #expect(client.headers(for: "http://127.0.0.1:8081/x").isEmpty)
    #expect(client.headers(for: "https://huggingface.co/a/b").isEmpty)
    try withHub { hub, _ in
        let c = HubClient(endpoint: hub.hubURL, token: "hf_good", sleeper: RecordingSleeper())
        _ = try c.resolveCommit(HubReference(repo: "org/model", revision: "main", path: ""))
        #expect(hub.requests().allSatisfy { $0.listener == "hub" && $0.auth })
    }
}

@Test func unreachableHubIsReported() throws {
    let sleeper = RecordingSleeper()
    let client = HubClient(endpoint: "http://127.0.0.1:9", token: nil, sleeper: sleeper, maxAttempts: 2)
    #expect(throws: HubError.self) { try client.resolveCommit(HubReference(repo: "a/b", revision: "main", path: "")) }
    #expect(sleeper.waits.count == 1)
}

@Test func retryDelayRules() {
    #expect(retryDelay(attempt: 0, response: HTTPResponse(status: 429, headers: ["ratelimit": "\"resolvers\";r=0;t=12"]), jitter: 0) == 13)
    #expect(retryDelay(attempt: 0, response: HTTPResponse(status: 429, headers: ["retry-after": "5"]), jitter: 0) == 6)
    #expect(retryDelay(attempt: 0, response: HTTPResponse(status: 429, headers: ["retry-after": "5000"]), jitter: 0) == 300)
    #expect(retryDelay(attempt: 0, response: nil, jitter: 0) == 1)
    #expect(retryDelay(attempt: 3, response: nil, jitter: 0) == 8)
    #expect(retryDelay(attempt: 9, response: nil, jitter: 1) == 12)
}

func gitBlobSHA1(_ data: Data) -> String {
    // Independent of the client: computed with the system's git-compatible formula via Foundation-free code.
    var message = Array("blob \(data.count)\0".utf8) + Array(data)
    return sha1Hex(&message)
}

/// A plain SHA-1 (RFC 3174) so the test does not reuse the code under test.
func sha1Hex(_ message: inout [UInt8]) -> String {
    var h: [UInt32] = [0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0]
    let ml = UInt64(message.count) * 8
    message.append(0x80)
    while message.count % 64 != 56 { message.append(0) }
    for i in (0..<8).reversed() { message.append(UInt8((ml >> (UInt64(i) * 8)) & 0xFF)) }
    for chunk in stride(from: 0, to: message.count, by: 64) {
        var w = [UInt32](repeating: 0, count: 80)
        for i in 0..<16 {
            w[i] = message[chunk + i * 4 ..< chunk + i * 4 + 4].reduce(0) { $0 << 8 | UInt32($1) }
        }
        for i in 16..<80 { let x = w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16]; w[i] = x << 1 | x >> 31 }
        var (a, b, c, d, e) = (h[0], h[1], h[2], h[3], h[4])
        for i in 0..<80 {
            let (f, k): (UInt32, UInt32) = i < 20 ? ((b & c) | (~b & d), 0x5A827999)
                : i < 40 ? (b ^ c ^ d, 0x6ED9EBA1) : i < 60 ? ((b & c) | (b & d) | (c & d), 0x8F1BBCDC) : (b ^ c ^ d, 0xCA62C1D6)
            let t = (a << 5 | a >> 27) &+ f &+ e &+ k &+ w[i]
            (e, d, c, b, a) = (d, c, b << 30 | b >> 2, a, t)
        }
        h[0] &+= a; h[1] &+= b; h[2] &+= c; h[3] &+= d; h[4] &+= e
    }
    return h.map { String(format: "%08x", $0) }.joined()
}

/// Numbers in a server's headers and listings are input: a huge RateLimit `t`, `nan` or a
/// negative Retry-After, and a negative or out-of-range size never trap or reach the sleeper
/// (before: `t + 1` trapped with an arithmetic overflow; a size of -1 reached apply).
@Test func serverNumbersAreClampedOrRefused() throws {
    let huge = HTTPResponse(status: 429, headers: ["ratelimit": "\"api\";r=0;t=9223372036854775807"])
    #expect(retryDelay(attempt: 0, response: huge, jitter: 0) == 300)
    for after in ["nan", "-5", "inf"] {
        let wait = retryDelay(attempt: 0, response: HTTPResponse(status: 429, headers: ["retry-after": after]), jitter: 0)
        #expect(wait.isFinite && wait >= 0, "Retry-After \(after) gave \(wait)")
    }
    try withHub { hub, dir in
        try hub.addFile(repo: "org/repo", path: "w.safetensors", Data(repeating: 1, count: 2 << 20))
        let client = HubClient(endpoint: hub.hubURL, token: "hf_good", sleeper: RecordingSleeper())
        let ref = HubReference(repo: "org/repo", revision: "main", path: "w.safetensors")
        let commit = try client.resolveCommit(ref)
        for size in [-1, 1e300] as [Any] {  // (the fake Hub serves sizes as integers)
            try hub.setConfig(["tokens": ["hf_good"], "faults": [["listener": "hub", "type": "lie_metadata",
                                                                    "file_contains": "w.safetensors", "size": size, "count": 10]]])
            #expect(throws: HubError.self, "size \(size)") { _ = try client.fileInfo(ref, commit: commit, paths: ["w.safetensors"]) }
        }
    }
}

/// olah and other proxies check a repo with `HEAD /api/models/{repo}`: every API route answers
/// HEAD with GET's status and headers and no body, as huggingface.co does.
@Test func theFakeHubAnswersHeadOnItsAPIRoutes() throws {
    try withHub(["tokens": ["hf_good"], "repos": ["org/model": ["gated": "manual", "granted": ["hf_good"]]]]) { hub, _ in
        let transport = CurlTransport()
        let paths = ["/api/models/org/model", "/api/models/org/model/revision/main", "/api/models/org/model/tree/main?recursive=true",
                     "/api/models/org/model/refs", "/api/models/org/none", "/api/models/org/model/revision/v9",
                     "/org/model/resolve/main/config.json", "/org/model/resolve/main/weights/big.safetensors"]
        for path in paths {
            for token in [nil, "hf_good"] as [String?] {
                let auth = token.map { [("Authorization", "Bearer \($0)")] } ?? []
                let get = try transport.send(HTTPRequest(method: "GET", url: hub.hubURL + path, headers: auth))
                let head = try transport.send(HTTPRequest(method: "HEAD", url: hub.hubURL + path, headers: auth))
                #expect(head.status == get.status && head.status != 405 && head.status != 501, "\(path): HEAD \(head.status), GET \(get.status)")
                #expect(head.body.isEmpty, "\(path): a HEAD reply has no body")
                for name in ["content-type", "content-length", "x-error-code", "x-repo-commit", "x-linked-etag"] {
                    #expect(head.header(name) == get.header(name), "\(path): \(name)")
                }
            }
        }
    }
}

/// A proxy that keeps everything on one host: the Hub's LFS redirect points at a path on the
/// endpoint's own origin, whose plain `200` carries no `X-Repo-Commit`. The commit and the
/// identity come from the redirect.
@Test func aSameOriginProxyRedirectGivesTheCommitAndIdentity() throws {
    try withHub { hub, _ in
        try hub.setConfig(["tokens": ["hf_good"], "lfs_on_hub": true])
        let client = HubClient(endpoint: hub.hubURL, token: "hf_good", sleeper: RecordingSleeper())
        let commit = try client.resolveCommit(HubReference(repo: "org/model", revision: "main", path: ""))
        let ref = HubReference(repo: "org/model", revision: "main", path: "weights/big.safetensors")
        let source = try client.downloadSource(ref, revision: "main")
        #expect(source.url.hasPrefix(hub.hubURL + "/lfs/") && source.sendToken)
        #expect(source.commit == commit)
        let listed = try #require(try client.fileInfo(ref, commit: commit, paths: [ref.path]).first)
        #expect(source.linkedETag == listed.sha256 && listed.sha256 != nil && source.linkedSize == 3000)
    }
}

/// A proxy that passes none of the Hub's headers on: with a lock (a pinned commit), the small
/// file's missing `X-Repo-Commit` is not an error; without one, the endpoint is not a Hub.
@Test func aMissingRepoCommitIsFineWhenTheLockPinsTheCommit() throws {
    try withHub { hub, _ in
        let client = HubClient(endpoint: hub.hubURL, token: nil, sleeper: RecordingSleeper())
        let commit = try client.resolveCommit(HubReference(repo: "org/model", revision: "main", path: ""))
        try hub.setConfig(["tokens": ["hf_good"], "hide_headers": ["hub": ["X-Repo-Commit", "X-Linked-Etag", "X-Linked-Size"]]])
        let ref = HubReference(repo: "org/model", revision: "main", path: "config.json")
        let pinned = try client.downloadSource(ref, revision: commit)
        #expect(pinned.commit == commit)
        #expect(pinned.linkedETag == nil || pinned.linkedETag == gitBlobSHA1(Data("{\"a\": 1}\n".utf8)))
        do {
            _ = try client.downloadSource(ref, revision: "main")
            Issue.record("an endpoint that never names the commit is not a Hub")
        } catch let error as HubError {
            guard case .notAHub = error else { Issue.record("got \(error)"); return }
        }
    }
}
