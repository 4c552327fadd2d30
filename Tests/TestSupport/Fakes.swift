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
