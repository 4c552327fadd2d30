import Foundation
import Synchronization
import GRDB

/// Errors of the state stage.
public enum StateError: Error, CustomStringConvertible {
    case cannotCreateDirectory(String, reason: String)
    /// The state directory (`what`: "directory") or one of the database's files in it
    /// ("database file") exists but cannot be written.
    case unwritable(path: String, what: String, reason: String)
    case corrupt(path: String, reason: String)
    case failed(path: String, reason: String)

    static let remedy = "Set state_directory in the config to a writable folder on a local disk, or fix the owner or permissions of"

    public var description: String {
        switch self {
        case .cannotCreateDirectory(let dir, let reason):
            return "cannot create the state directory \(dir): \(reason). \(Self.remedy) its parent folder."
        case .unwritable(let path, let what, let reason):
            return "cannot use the state \(what) \(path): \(reason). \(Self.remedy) \(path)."
        case .corrupt(let path, let reason):
            return "the state database \(path) is not a wgpm database or is damaged (\(reason)). It holds only caches and the queue: move it aside and run again."
        case .failed(let path, let reason):
            return "the state database \(path) failed: \(reason)"
        }
    }
}

/// `strerror` in lower case, as it reads inside a sentence ("permission denied").
func plainError(_ code: Int32) -> String {
    let text = String(cString: strerror(code))
    return text.prefix(1).lowercased() + text.dropFirst()
}

/// Identity of one file in a Hub repo at one commit.
public struct HubFileRecord: Hashable, Sendable {
    public var path: String
    public var size: Int64
    public var sha256: String?
    public var gitSHA1: String?

    public init(path: String, size: Int64, sha256: String?, gitSHA1: String?) {
        self.path = path
        self.size = size
        self.sha256 = sha256
        self.gitSHA1 = gitSHA1
    }
}

/// The key under which a file's hash stays valid: the same inode with the same size and mtime.
public struct FileStamp: Hashable, Sendable {
    public var device: UInt64
    public var inode: UInt64
    public var size: Int64
    public var mtimeNanoseconds: Int64

    public init(device: UInt64, inode: UInt64, size: Int64, mtimeNanoseconds: Int64) {
        self.device = device
        self.inode = inode
        self.size = size
        self.mtimeNanoseconds = mtimeNanoseconds
    }
}

/// wgpm's SQLite state: Hub metadata cache, hash cache, and the paths wgpm created.
///
/// WAL mode, so a `plan` can read while an `apply` writes. Everything here can be rebuilt:
/// losing the file costs requests and hashing, never user data.
public final class StateDatabase: Sendable {
    public let path: String
    let directory: String
    private let opened = Mutex<DatabasePool?>(nil)

    /// Names the database; it is created (with its folder) on first use, so a command that
    /// fails before it needs the state (a missing config, a bad manifest) leaves nothing behind.
    public init(directory: String) throws {
        self.directory = directory
        path = (directory as NSString).appendingPathComponent("state.sqlite")
    }

    /// The open database; opens (and migrates) it on the first call.
    var pool: DatabasePool {
        get throws {
            try opened.withLock { pool in
                if let pool { return pool }
                let new = try Self.open(directory: directory, path: path)
                pool = new
                return new
            }
        }
    }

    /// Opens or creates the database now: for `doctor`, which checks that it can.
    public func open() throws { _ = try pool }

    private static func open(directory: String, path: String) throws -> DatabasePool {
        try prepare(directory)
        var config = Configuration()
        config.busyMode = .timeout(10)
        config.prepareDatabase { db in
            try db.execute(sql: "PRAGMA synchronous = NORMAL")
        }
        do {
            let pool = try DatabasePool(path: path, configuration: config)
            try migrator.migrate(pool)
            return pool
        } catch let error as DatabaseError where [.SQLITE_NOTADB, .SQLITE_CORRUPT].contains(error.resultCode.primaryResultCode) {
            throw StateError.corrupt(path: path, reason: error.message ?? "\(error)")
        } catch let error as DatabaseError {
            // SQLite says only "unable to open database file" or "attempt to write a readonly
            // database"; the files themselves say which one is in the way and why.
            if [.SQLITE_CANTOPEN, .SQLITE_READONLY, .SQLITE_PERM, .SQLITE_IOERR].contains(error.resultCode.primaryResultCode) {
                for file in [path, path + "-wal", path + "-shm"] where FileManager.default.fileExists(atPath: file) {
                    if access(file, R_OK | W_OK) != 0 { throw StateError.unwritable(path: file, what: "database file", reason: plainError(errno)) }
                }
                if access(directory, W_OK | X_OK) != 0 { throw StateError.unwritable(path: directory, what: "directory", reason: plainError(errno)) }
            }
            throw StateError.failed(path: path, reason: error.message ?? "\(error)")
        }
    }

    /// Makes sure `directory` exists (creating missing folders, as `mkdir -p`) and can be
    /// written, with the reason in the system's words when not: permission denied, read-only
    /// file system, not a directory.
    static func prepare(_ directory: String) throws {
        var st = stat()
        if stat(directory, &st) != 0 {
            var current = directory.hasPrefix("/") ? "" : "."
            for part in directory.split(separator: "/") {
                current += "/" + part
                var cst = stat()
                if stat(current, &cst) == 0 {
                    guard cst.st_mode & S_IFMT == S_IFDIR else {
                        throw StateError.cannotCreateDirectory(directory, reason: "\(current) is not a directory")
                    }
                    continue
                }
                if mkdir(current, 0o777) != 0 && errno != EEXIST {
                    let reason = plainError(errno)
                    let parent = (current as NSString).deletingLastPathComponent
                    throw StateError.cannotCreateDirectory(directory, reason: "\(reason) (creating it in \(parent.isEmpty ? "/" : parent))")
                }
            }
        } else if st.st_mode & S_IFMT != S_IFDIR {
            throw StateError.unwritable(path: directory, what: "directory", reason: "it is not a directory")
        }
        if access(directory, W_OK | X_OK) != 0 {
            throw StateError.unwritable(path: directory, what: "directory", reason: plainError(errno))
        }
    }

    static var migrator: DatabaseMigrator {
        var m = DatabaseMigrator()
        m.registerMigration("v1") { db in
            try db.execute(sql: """
                CREATE TABLE hub_revision (
                    repo TEXT NOT NULL, revision TEXT NOT NULL, commit_id TEXT NOT NULL, fetched_at REAL NOT NULL,
                    PRIMARY KEY (repo, revision));
                CREATE TABLE hub_file (
                    repo TEXT NOT NULL, commit_id TEXT NOT NULL, path TEXT NOT NULL,
                    size INTEGER NOT NULL, sha256 TEXT, git_sha1 TEXT,
                    PRIMARY KEY (repo, commit_id, path));
                CREATE TABLE file_hash (
                    device INTEGER NOT NULL, inode INTEGER NOT NULL, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL,
                    sha256 TEXT, git_sha1 TEXT,
                    PRIMARY KEY (device, inode));
                CREATE TABLE managed_path (path TEXT PRIMARY KEY NOT NULL, created_at REAL NOT NULL);
                """)
        }
        registerQueue(&m)
        registerIndex(&m)
        registerBadSources(&m)
        return m
    }

    func run<T>(_ body: () throws -> T) throws -> T {
        do { return try body() } catch let error as DatabaseError {
            throw StateError.failed(path: path, reason: error.message ?? "\(error)")
        }
    }

    // MARK: Hub metadata

    public func cachedCommit(repo: String, revision: String) throws -> String? {
        try run { try pool.read { db in
            try String.fetchOne(db, sql: "SELECT commit_id FROM hub_revision WHERE repo = ? AND revision = ?",
                                arguments: [repo, revision])
        } }
    }

    /// The cached commit of a revision and when it was asked for (seconds since 1970).
    public func cachedRevision(repo: String, revision: String) throws -> (commit: String, fetchedAt: Double)? {
        try run { try pool.read { db in
            try Row.fetchOne(db, sql: "SELECT commit_id, fetched_at FROM hub_revision WHERE repo = ? AND revision = ?",
                             arguments: [repo, revision]).map { ($0["commit_id"], $0["fetched_at"]) }
        } }
    }

    public func storeCommit(repo: String, revision: String, commit: String, at time: Double) throws {
        try run { try pool.write { db in
            try db.execute(sql: "INSERT OR REPLACE INTO hub_revision VALUES (?, ?, ?, ?)",
                           arguments: [repo, revision, commit, time])
        } }
    }

    public func cachedFiles(repo: String, commit: String, paths: [String]) throws -> [String: HubFileRecord] {
        try run { try pool.read { db in
            var out: [String: HubFileRecord] = [:]
            let rows = try Row.fetchCursor(db, sql: "SELECT path, size, sha256, git_sha1 FROM hub_file WHERE repo = ? AND commit_id = ?",
                                           arguments: [repo, commit])
            let wanted = Set(paths)
            while let row = try rows.next() {
                let p: String = row["path"]
                if wanted.contains(p) {
                    out[p] = HubFileRecord(path: p, size: row["size"], sha256: row["sha256"], gitSHA1: row["git_sha1"])
                }
            }
            return out
        } }
    }

    public func storeFiles(repo: String, commit: String, files: [HubFileRecord]) throws {
        try run { try pool.write { db in
            let stmt = try db.makeStatement(sql: "INSERT OR REPLACE INTO hub_file VALUES (?, ?, ?, ?, ?, ?)")
            for f in files {
                try stmt.execute(arguments: [repo, commit, f.path, f.size, f.sha256, f.gitSHA1])
            }
        } }
    }

    // MARK: Hash cache

    /// Cached hashes for a file, valid only while device, inode, size and mtime are unchanged.
    public func cachedHash(_ stamp: FileStamp) throws -> (sha256: String?, gitSHA1: String?)? {
        try run { try pool.read { db in
            guard let row = try Row.fetchOne(db, sql: """
                SELECT sha256, git_sha1 FROM file_hash WHERE device = ? AND inode = ? AND size = ? AND mtime_ns = ?
                """, arguments: [Int64(bitPattern: stamp.device), Int64(bitPattern: stamp.inode), stamp.size, stamp.mtimeNanoseconds])
            else { return nil }
            return (row["sha256"], row["git_sha1"])
        } }
    }

    /// Records hashes; a hash already known for the same stamp is kept when the new one is nil.
    public func storeHash(_ stamp: FileStamp, sha256: String?, gitSHA1: String?) throws {
        try run { try pool.write { db in
            let dev = Int64(bitPattern: stamp.device), ino = Int64(bitPattern: stamp.inode)
            let old = try Row.fetchOne(db, sql: """
                SELECT sha256, git_sha1 FROM file_hash WHERE device = ? AND inode = ? AND size = ? AND mtime_ns = ?
                """, arguments: [dev, ino, stamp.size, stamp.mtimeNanoseconds])
            let sha = sha256 ?? old?["sha256"]
            let sha1 = gitSHA1 ?? old?["git_sha1"]
            try db.execute(sql: "INSERT OR REPLACE INTO file_hash VALUES (?, ?, ?, ?, ?, ?)",
                           arguments: [dev, ino, stamp.size, stamp.mtimeNanoseconds, sha, sha1])
        } }
    }

    // MARK: Paths wgpm created

    public func managedPaths() throws -> Set<String> {
        try run { try pool.read { db in Set(try String.fetchAll(db, sql: "SELECT path FROM managed_path")) } }
    }

    public func recordManaged(_ path: String, at time: Double) throws {
        try run { try pool.write { db in
            try db.execute(sql: "INSERT OR REPLACE INTO managed_path VALUES (?, ?)", arguments: [path, time])
        } }
    }
}
