import Foundation

/// The repository root, found from this file's location.
public let repositoryRoot = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path

/// The real Wan2GP definitions shipped with the tests.
public let wan2gpFixture = repositoryRoot + "/fixtures/wan2gp"

/// A fresh temporary directory, removed by `remove()`.
public struct TempDir: Sendable {
    public let path: String
    public init(_ name: String = "wgpm") throws {
        path = FileManager.default.temporaryDirectory.appendingPathComponent("\(name)-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }
    public func remove() { try? FileManager.default.removeItem(atPath: path) }
    public func file(_ rel: String) -> String { path + "/" + rel }

    @discardableResult
    public func write(_ rel: String, _ text: String) throws -> String {
        try write(rel, Data(text.utf8))
    }

    @discardableResult
    public func write(_ rel: String, _ data: Data) throws -> String {
        let p = file(rel)
        try FileManager.default.createDirectory(atPath: (p as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try data.write(to: URL(fileURLWithPath: p))
        return p
    }
}

/// One line of the fake Hub's request log.
public struct LoggedRequest: Decodable, Sendable {
    public var listener: String
    public var method: String
    public var path: String
    public var status: Int
    public var auth: Bool
    public var range: String?
    public var bytes: Int
    /// When the fake Hub logged it (after the body for file replies), seconds since 1970.
    public var time: Double?
    /// The type of the fault this request took, if any.
    public var fault: String?
}

/// The fake Hub of tools/fakehub, started on free ports for one test and stopped after it.
public final class FakeHub: @unchecked Sendable {
    public let root: String
    public let hubURL: String
    public let cdnURL: String
    let process: Process
    let logPath: String

    /// Starts the server over `root` (repos at `<root>/<org>/<name>/…`).
    public init(root: String, config: [String: Any] = [:]) throws {
        self.root = root
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        let ready = root + "/../fakehub-ready-\(UUID().uuidString).json"
        logPath = root + "/../fakehub-log-\(UUID().uuidString).jsonl"
        process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", repositoryRoot + "/tools/fakehub/fakehub.py", "--root", root,
                             "--log", logPath, "--ready-file", ready, "--lifetime", "600"]
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        var info: [String: Any]?
        for _ in 0..<200 {
            if let data = FileManager.default.contents(atPath: ready),
               let json = try? JSONSerialization.jsonObject(with: data) as? [String: Any] { info = json; break }
            Thread.sleep(forTimeInterval: 0.05)
        }
        guard let info, let hub = info["hub"] as? String, let cdn = info["cdn"] as? String else {
            process.terminate()
            throw NSError(domain: "FakeHub", code: 1, userInfo: [NSLocalizedDescriptionKey: "the fake Hub did not start"])
        }
        hubURL = hub
        cdnURL = cdn
        try setConfig(config)
    }

    deinit { stop() }

    public func stop() {
        guard process.isRunning else { return }
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }

    /// Replaces `_config.json` (tokens, repo access, faults); the server re-reads it per request.
    public func setConfig(_ config: [String: Any]) throws {
        let data = try JSONSerialization.data(withJSONObject: config)
        let tmp = root + "/_config.json.tmp"
        try data.write(to: URL(fileURLWithPath: tmp))
        _ = rename(tmp, root + "/_config.json")
    }

    /// Adds a file to a repo; returns its absolute path.
    @discardableResult
    public func addFile(repo: String, path: String, _ data: Data) throws -> String {
        let p = "\(root)/\(repo)/\(path)"
        try FileManager.default.createDirectory(atPath: (p as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try data.write(to: URL(fileURLWithPath: p))
        return p
    }

    /// Keeps the repo's current commit reachable by its id (under `_history`), as the real Hub
    /// does, so a test can move `main` and still download what a lock pinned. Returns the id.
    @discardableResult
    public func keepCurrentCommit(repo: String) throws -> String {
        // Asked over HTTP through Python: Foundation on Linux fetches no http URLs without
        // FoundationNetworking, which the tests do not otherwise need.
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["python3", "-c", "import json, sys, urllib.request; print(json.load(urllib.request.urlopen(sys.argv[1]))['sha'])",
                       "\(hubURL)/api/models/\(repo)/revision/main"]
        let out = Pipe()
        p.standardOutput = out
        try p.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        let commit = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        guard p.terminationStatus == 0, commit.count == 40 else {
            throw NSError(domain: "FakeHub", code: 2, userInfo: [NSLocalizedDescriptionKey: "no commit for \(repo)"])
        }
        let target = "\(root)/_history/\(repo)/\(commit)"
        try FileManager.default.createDirectory(atPath: (target as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: "\(root)/\(repo)", toPath: target)
        return commit
    }

    /// Builds synthetic repos for every Hub URL in `text` (tools/fakehub/generate.py).
    public func generate(from text: String) throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["python3", repositoryRoot + "/tools/fakehub/generate.py", "--root", root, "--max-kib", "8"]
        let pipe = Pipe()
        p.standardInput = pipe
        p.standardOutput = FileHandle.nullDevice
        try p.run()
        pipe.fileHandleForWriting.write(Data(text.utf8))
        try pipe.fileHandleForWriting.close()
        p.waitUntilExit()
    }

    /// The request log. File transfers are logged when their body has been sent, so this waits
    /// up to `settle` seconds for at least `atLeast` entries.
    public func requests(atLeast: Int = 0, settle: Double = 3) -> [LoggedRequest] {
        let deadline = Date().addingTimeInterval(settle)
        var list = readLog()
        while list.count < atLeast, Date() < deadline {
            Thread.sleep(forTimeInterval: 0.02)
            list = readLog()
        }
        return list
    }

    func readLog() -> [LoggedRequest] {
        guard let text = try? String(contentsOfFile: logPath, encoding: .utf8) else { return [] }
        return text.split(separator: "\n").compactMap { try? JSONDecoder().decode(LoggedRequest.self, from: Data($0.utf8)) }
    }

    public func clearLog() { try? FileManager.default.removeItem(atPath: logPath) }
}

/// Runs a program and collects its exit code and output.
public struct RunResult: Sendable {
    public var status: Int32
    public var stdout: String
    public var stderr: String
    /// stderr with wrapped warnings joined again (their continuation lines are indented by 4).
    public var warnings: String { stderr.replacingOccurrences(of: "\n    ", with: " ") }
}

public func run(_ executable: String, _ arguments: [String], environment: [String: String] = [:], cwd: String? = nil) throws -> RunResult {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: executable)
    p.arguments = arguments
    var env = ProcessInfo.processInfo.environment
    for key in ["HF_ENDPOINT", "HF_TOKEN", "WGPM_CONFIG", "HF_HOME", "NO_COLOR"] { env[key] = nil }
    for (k, v) in environment { env[k] = v }
    p.environment = env
    if let cwd { p.currentDirectoryURL = URL(fileURLWithPath: cwd) }
    let out = Pipe(), err = Pipe()
    p.standardOutput = out
    p.standardError = err
    p.standardInput = FileHandle.nullDevice
    try p.run()
    // Read before waiting so a large output cannot block the child.
    let o = out.fileHandleForReading.readDataToEndOfFile()
    let e = err.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    return RunResult(status: p.terminationStatus, stdout: String(decoding: o, as: UTF8.self), stderr: String(decoding: e, as: UTF8.self))
}

/// Mounts a tmpfs of `size` (e.g. "1m") on `folder` (created if missing) for the body, then
/// unmounts it: another filesystem inside a machine's folders, or a small disk that fills.
/// Needs root; without it the test records an issue instead of passing silently.
public func withTmpfs(at folder: String, size: String, _ body: () throws -> Void) throws {
    try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
    guard (try? run("/bin/mount", ["-t", "tmpfs", "-o", "size=\(size)", "tmpfs", folder]))?.status == 0 else {
        throw NSError(domain: "TestSupport", code: 3, userInfo: [NSLocalizedDescriptionKey: "this test needs root and tmpfs (mount failed)"])
    }
    defer { _ = try? run("/bin/umount", [folder]) }
    try body()
}
