import Foundation
import HubClient
import Inventory

/// Records waits instead of sleeping, so retry tests are fast and can assert on the delays.
public final class RecordingSleeper: Sleeper, @unchecked Sendable {
    private let lock = NSLock()
    private var _waits: [Double] = []
    public init() {}
    public var waits: [Double] { lock.lock(); defer { lock.unlock() }; return _waits }
    public func sleep(seconds: Double) { lock.lock(); _waits.append(seconds); lock.unlock() }
}

/// The real file system, counting which files were hashed (tests assert that only the files
/// that can match are read).
public final class CountingFileSystem: FileSystem, @unchecked Sendable {
    let real = LocalFileSystem()
    let lock = NSLock()
    private var _hashed: [String] = []
    public init() {}
    public var hashed: [String] {
        get { lock.withLock { _hashed } }
        set { lock.withLock { _hashed = newValue } }
    }
    public func lstat(_ path: String) -> FileStatus? { real.lstat(path) }
    public func stat(_ path: String) -> FileStatus? { real.stat(path) }
    public func readlink(_ path: String) -> String? { real.readlink(path) }
    public func hash(_ path: String, sha256: Bool, gitSHA1: Bool) throws -> (sha256: String?, gitSHA1: String?) {
        lock.withLock { _hashed.append(path) }
        return try real.hash(path, sha256: sha256, gitSHA1: gitSHA1)
    }
    public func filesystem(of path: String) -> (id: String, mountPoint: String, freeBytes: Int64)? { real.filesystem(of: path) }
}

/// The real file system, except that reading the files in `unreadable` fails with EACCES, as it
/// does for a non-root user on a root-owned mode-600 file (tests run as root, where it does not);
/// it counts prefix reads, to check only files without a known hash are read.
public final class UnreadableFileSystem: FileSystem, @unchecked Sendable {
    let real = LocalFileSystem()
    let lock = NSLock()
    public let unreadable: Set<String>
    private var _prefixReads: [String] = []
    public init(unreadable: Set<String>) { self.unreadable = unreadable }
    public var prefixReads: [String] { lock.withLock { _prefixReads } }
    public func lstat(_ path: String) -> FileStatus? { real.lstat(path) }
    public func stat(_ path: String) -> FileStatus? { real.stat(path) }
    public func readlink(_ path: String) -> String? { real.readlink(path) }
    func check(_ path: String) throws {
        let resolved = (try? FileManager.default.destinationOfSymbolicLink(atPath: path)) ?? path
        if unreadable.contains(path) || unreadable.contains(resolved) {
            throw HashError(path: path, reason: String(cString: strerror(EACCES)))
        }
    }
    public func hash(_ path: String, sha256: Bool, gitSHA1: Bool) throws -> (sha256: String?, gitSHA1: String?) {
        try check(path)
        return try real.hash(path, sha256: sha256, gitSHA1: gitSHA1)
    }
    public func readPrefix(_ path: String, count: Int) throws -> [UInt8] {
        lock.withLock { _prefixReads.append(path) }
        try check(path)
        return try real.readPrefix(path, count: count)
    }
    public func filesystem(of path: String) -> (id: String, mountPoint: String, freeBytes: Int64)? { real.filesystem(of: path) }
}

/// A Python `sqlite3` connection holding a write lock on a database, as InvokeAI does during a
/// write in rollback-journal mode: `journal_mode=DELETE`, then `BEGIN EXCLUSIVE`, kept open
/// until `release()`. Readers of such a database get SQLITE_BUSY until then.
public final class DatabaseLockHolder: @unchecked Sendable {
    let process = Process()
    let input = Pipe()

    public init(database: String) throws {
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", "-c", """
            import sqlite3, sys
            c = sqlite3.connect(sys.argv[1], isolation_level=None)
            c.execute("PRAGMA journal_mode=DELETE")
            c.execute("BEGIN EXCLUSIVE")
            print("locked", flush=True)
            sys.stdin.read()
            """, database]
        let output = Pipe()
        process.standardInput = input
        process.standardOutput = output
        try process.run()
        let line = String(decoding: output.fileHandleForReading.readData(ofLength: 7), as: UTF8.self)
        guard line.hasPrefix("locked") else {
            release()
            throw HashError(path: database, reason: "the Python lock holder did not start (\(line))")
        }
    }

    /// Ends the transaction by ending the process.
    public func release() {
        try? input.fileHandleForWriting.close()
        process.waitUntilExit()
    }

    deinit { if process.isRunning { release() } }
}
