import Foundation
import GRDB

/// One row of the persistent queue.
public struct JobRecord: Hashable, Sendable {
    public enum State: String, Sendable, CaseIterable { case pending, running, done, failed }
    public var id: String
    public var kind: String
    public var path: String
    /// The job's full description (JSON), written by the executor.
    public var spec: String
    public var state: State
    public var attempts: Int
    public var bytesDone: Int64
    public var bytesTotal: Int64?
    public var lastError: String?
    public var ownerPID: Int32?
    public var updatedAt: Double
}

extension StateDatabase {
    static func registerQueue(_ m: inout DatabaseMigrator) {
        m.registerMigration("v2-queue") { db in
            try db.execute(sql: """
                CREATE TABLE job (
                    id TEXT PRIMARY KEY NOT NULL, kind TEXT NOT NULL, path TEXT NOT NULL, spec TEXT NOT NULL,
                    state TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
                    bytes_done INTEGER NOT NULL DEFAULT 0, bytes_total INTEGER, last_error TEXT,
                    owner_pid INTEGER, created_at REAL NOT NULL, updated_at REAL NOT NULL,
                    seq INTEGER NOT NULL);
                CREATE INDEX job_state ON job(state, seq);
                CREATE INDEX job_path ON job(path);
                """)
        }
    }

    /// Adds jobs; a job whose id is already queued adds nothing. A finished or failed job with
    /// the same id becomes pending again (the plan wants it again), and a pending job for the
    /// same path with another id is superseded (the plan changed).
    /// Returns how many jobs became pending.
    @discardableResult
    public func enqueue(_ jobs: [(id: String, kind: String, path: String, spec: String, bytesTotal: Int64?)], at time: Double) throws -> Int {
        try run { try pool.write { db in
            var added = 0
            var seq = try Int.fetchOne(db, sql: "SELECT COALESCE(MAX(seq), 0) FROM job") ?? 0
            for job in jobs {
                try db.execute(sql: "DELETE FROM job WHERE path = ? AND id != ? AND state IN ('pending', 'failed')",
                               arguments: [job.path, job.id])
                if let state = try String.fetchOne(db, sql: "SELECT state FROM job WHERE id = ?", arguments: [job.id]) {
                    if state == "done" || state == "failed" {
                        try db.execute(sql: """
                            UPDATE job SET state = 'pending', attempts = 0, last_error = NULL, bytes_done = 0, updated_at = ?
                            WHERE id = ?
                            """, arguments: [time, job.id])
                        added += 1
                    }
                    continue
                }
                seq += 1
                try db.execute(sql: """
                    INSERT INTO job (id, kind, path, spec, state, bytes_total, created_at, updated_at, seq)
                    VALUES (?, ?, ?, ?, 'pending', ?, ?, ?, ?)
                    """, arguments: [job.id, job.kind, job.path, job.spec, job.bytesTotal, time, time, seq])
                added += 1
            }
            return added
        } }
    }

    /// Takes the oldest pending job and marks it running for `pid`.
    public func claimNextJob(pid: Int32, at time: Double) throws -> JobRecord? {
        try run { try pool.write { db in
            guard let id = try String.fetchOne(db, sql: "SELECT id FROM job WHERE state = 'pending' ORDER BY seq LIMIT 1") else {
                return nil
            }
            try db.execute(sql: "UPDATE job SET state = 'running', owner_pid = ?, attempts = attempts + 1, updated_at = ? WHERE id = ?",
                           arguments: [pid, time, id])
            return try Self.fetchJob(db, id: id)
        } }
    }

    public func finishJob(_ id: String, bytes: Int64?, at time: Double) throws {
        try run { try pool.write { db in
            try db.execute(sql: """
                UPDATE job SET state = 'done', owner_pid = NULL, last_error = NULL,
                bytes_done = COALESCE(?, bytes_done), updated_at = ? WHERE id = ?
                """, arguments: [bytes, time, id])
        } }
    }

    public func failJob(_ id: String, error: String, at time: Double) throws {
        try run { try pool.write { db in
            try db.execute(sql: "UPDATE job SET state = 'failed', owner_pid = NULL, last_error = ?, updated_at = ? WHERE id = ?",
                           arguments: [error, time, id])
        } }
    }

    /// Puts a running job back (interrupted); its partial data stays on disk.
    public func releaseJob(_ id: String, note: String?, at time: Double) throws {
        try run { try pool.write { db in
            try db.execute(sql: "UPDATE job SET state = 'pending', owner_pid = NULL, last_error = COALESCE(?, last_error), updated_at = ? WHERE id = ?",
                           arguments: [note, time, id])
        } }
    }

    public func updateProgress(_ id: String, bytesDone: Int64, at time: Double) throws {
        try run { try pool.write { db in
            try db.execute(sql: "UPDATE job SET bytes_done = ?, updated_at = ? WHERE id = ?", arguments: [bytesDone, time, id])
        } }
    }

    /// Jobs left running by a process that died return to pending. Call only while holding the
    /// queue lock: then no other process can be running them.
    @discardableResult
    public func recoverAbandonedJobs(at time: Double) throws -> Int {
        try run { try pool.write { db in
            try db.execute(sql: "UPDATE job SET state = 'pending', owner_pid = NULL, updated_at = ? WHERE state = 'running'",
                           arguments: [time])
            return db.changesCount
        } }
    }

    public func jobs() throws -> [JobRecord] {
        try run { try pool.read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM job ORDER BY seq").map(Self.record)
        } }
    }

    /// Failed jobs become pending again with a fresh attempt count.
    @discardableResult
    public func retryFailedJobs(at time: Double) throws -> Int {
        try run { try pool.write { db in
            try db.execute(sql: "UPDATE job SET state = 'pending', attempts = 0, updated_at = ? WHERE state = 'failed'", arguments: [time])
            return db.changesCount
        } }
    }

    /// Removes finished jobs (and failed ones with `includeFailed`).
    @discardableResult
    public func clearJobs(includeFailed: Bool) throws -> Int {
        try run { try pool.write { db in
            try db.execute(sql: includeFailed ? "DELETE FROM job WHERE state IN ('done', 'failed')" : "DELETE FROM job WHERE state = 'done'")
            return db.changesCount
        } }
    }

    public func forgetManaged(_ path: String) throws {
        try run { try pool.write { db in try db.execute(sql: "DELETE FROM managed_path WHERE path = ?", arguments: [path]) } }
    }

    static func fetchJob(_ db: Database, id: String) throws -> JobRecord? {
        try Row.fetchOne(db, sql: "SELECT * FROM job WHERE id = ?", arguments: [id]).map(record)
    }

    static func record(_ row: Row) -> JobRecord {
        JobRecord(id: row["id"], kind: row["kind"], path: row["path"], spec: row["spec"],
                  state: JobRecord.State(rawValue: row["state"]) ?? .failed, attempts: row["attempts"],
                  bytesDone: row["bytes_done"], bytesTotal: row["bytes_total"], lastError: row["last_error"],
                  ownerPID: row["owner_pid"], updatedAt: row["updated_at"])
    }
}
