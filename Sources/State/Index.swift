import Foundation
import GRDB

/// One file of a local source as the hash index records it.
public struct IndexedFile: Hashable, Sendable {
    public var path: String
    public var source: String
    public var stamp: FileStamp
    public var sha256: String?
    public var gitSHA1: String?
    public var urls: [String]

    public init(path: String, source: String, stamp: FileStamp, sha256: String?, gitSHA1: String?, urls: [String]) {
        self.path = path
        self.source = source
        self.stamp = stamp
        self.sha256 = sha256
        self.gitSHA1 = gitSHA1
        self.urls = urls
    }
}

extension StateDatabase {
    static func registerIndex(_ m: inout DatabaseMigrator) {
        m.registerMigration("v3-index") { db in
            try db.execute(sql: """
                CREATE TABLE source_file (
                    path TEXT PRIMARY KEY NOT NULL, source TEXT NOT NULL, device INTEGER NOT NULL, inode INTEGER NOT NULL,
                    size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, sha256 TEXT, git_sha1 TEXT, urls TEXT NOT NULL);
                CREATE INDEX source_file_size ON source_file(size);
                CREATE INDEX source_file_sha256 ON source_file(sha256);
                CREATE INDEX source_file_source ON source_file(source);
                """)
        }
    }

    static func indexed(_ r: Row) -> IndexedFile {
        IndexedFile(path: r["path"], source: r["source"],
                    stamp: FileStamp(device: UInt64(bitPattern: r["device"]), inode: UInt64(bitPattern: r["inode"]),
                                     size: r["size"], mtimeNanoseconds: r["mtime_ns"]),
                    sha256: r["sha256"], gitSHA1: r["git_sha1"],
                    urls: (r["urls"] as String).split(separator: "\n").map(String.init))
    }

    public func indexedFiles(source: String) throws -> [String: IndexedFile] {
        try run { try pool.read { db in
            var out: [String: IndexedFile] = [:]
            for r in try Row.fetchAll(db, sql: "SELECT * FROM source_file WHERE source = ?", arguments: [source]) {
                let f = Self.indexed(r)
                out[f.path] = f
            }
            return out
        } }
    }

    public func indexedFilesAll() throws -> [IndexedFile] {
        try run { try pool.read { db in try Row.fetchAll(db, sql: "SELECT * FROM source_file ORDER BY path").map(Self.indexed) } }
    }

    /// Replaces what the index holds for one source with a fresh scan, in one transaction.
    public func replaceIndex(source: String, files: [IndexedFile]) throws {
        try run { try pool.write { db in
            try db.execute(sql: "DELETE FROM source_file WHERE source = ?", arguments: [source])
            let stmt = try db.makeStatement(sql: "INSERT OR REPLACE INTO source_file VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)")
            for f in files {
                try stmt.execute(arguments: [f.path, f.source, Int64(bitPattern: f.stamp.device), Int64(bitPattern: f.stamp.inode),
                                             f.stamp.size, f.stamp.mtimeNanoseconds, f.sha256, f.gitSHA1, f.urls.joined(separator: "\n")])
            }
        } }
    }

    public func updateIndexedHash(path: String, sha256: String) throws {
        try updateIndexedHashes(path: path, sha256: sha256, gitSHA1: nil)
    }

    /// Records computed digests of an indexed file; a nil one leaves what is known.
    public func updateIndexedHashes(path: String, sha256: String?, gitSHA1: String?) throws {
        try run { try pool.write { db in
            try db.execute(sql: "UPDATE source_file SET sha256 = COALESCE(?, sha256), git_sha1 = COALESCE(?, git_sha1) WHERE path = ?",
                           arguments: [sha256, gitSHA1, path])
        } }
    }

    /// Drops the index (`wgpm index rebuild`); the hash cache stays, so unchanged files are not hashed again.
    public func clearIndex() throws {
        try run { try pool.write { db in try db.execute(sql: "DELETE FROM source_file") } }
    }
}

extension StateDatabase {
    static func registerBadSources(_ m: inout DatabaseMigrator) {
        m.registerMigration("v4-bad-source") { db in
            try db.execute(sql: """
                CREATE TABLE bad_source (
                    path TEXT PRIMARY KEY NOT NULL, device INTEGER NOT NULL, inode INTEGER NOT NULL,
                    size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, reason TEXT NOT NULL);
                """)
        }
    }

    /// Records that a local source file does not hold what its store claims. It stays bad while
    /// it is unchanged (same stamp); a changed file is judged again.
    public func markBadSource(path: String, stamp: FileStamp, reason: String) throws {
        try run { try pool.write { db in
            try db.execute(sql: "INSERT OR REPLACE INTO bad_source VALUES (?, ?, ?, ?, ?, ?)",
                           arguments: [path, Int64(bitPattern: stamp.device), Int64(bitPattern: stamp.inode),
                                       stamp.size, stamp.mtimeNanoseconds, reason])
        } }
    }

    /// Source files found bad, with the stamp they had then.
    public func badSources() throws -> [String: FileStamp] {
        try run { try pool.read { db in
            var out: [String: FileStamp] = [:]
            for r in try Row.fetchAll(db, sql: "SELECT * FROM bad_source") {
                out[r["path"]] = FileStamp(device: UInt64(bitPattern: r["device"]), inode: UInt64(bitPattern: r["inode"]),
                                           size: r["size"], mtimeNanoseconds: r["mtime_ns"])
            }
            return out
        } }
    }
}
