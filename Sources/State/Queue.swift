import Foundation
import GRDB
#if canImport(Glibc)
import Glibc
#endif

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
        try claimNextJob(pid: pid, at: time, admit: { _ in [:] }).job
    }

    /// What one claim did: the job now running for the caller, and the pending jobs that
    /// `admit` turned away (now failed, with its reason).
    public struct Claim: Sendable {
        public var job: JobRecord?
        public var refused: [(job: JobRecord, reason: String)]
    }

    /// Admits and claims in one write transaction, so no job enqueued meanwhile (by this or
    /// another process) can be claimed without having been through `admit`. `admit` sees every
    /// pending and running job and returns the ids of pending ones that must fail instead of
    /// running, each with the reason; then the oldest remaining pending job that is not a
    /// download (else the oldest download) is marked running.
    public func claimNextJob(pid: Int32, at time: Double,
                             admit: ([JobRecord]) -> [String: String]) throws -> Claim {
        try run { try pool.write { db in
            let waiting = try Row.fetchAll(db, sql: "SELECT * FROM job WHERE state IN ('pending', 'running') ORDER BY seq").map(Self.record)
            var refused: [(JobRecord, String)] = []
            for (id, reason) in admit(waiting).sorted(by: { $0.key < $1.key }) {
                try db.execute(sql: "UPDATE job SET state = 'failed', last_error = ?, updated_at = ? WHERE id = ? AND state = 'pending'",
                               arguments: [reason, time, id])
                if db.changesCount > 0, let job = waiting.first(where: { $0.id == id }) { refused.append((job, reason)) }
            }
            let refusedIDs = Set(refused.map(\.0.id))
            // Links and removals first: they need no network, so a Hub that is slow or down
            // does not keep files a local source holds from being placed.
            let claimable = waiting.filter { $0.state == .pending && !refusedIDs.contains($0.id) }
            guard let next = claimable.first(where: { $0.kind != "download" }) ?? claimable.first else {
                return Claim(job: nil, refused: refused)
            }
            try db.execute(sql: "UPDATE job SET state = 'running', owner_pid = ?, attempts = attempts + 1, updated_at = ? WHERE id = ?",
                           arguments: [pid, time, next.id])
            return Claim(job: try Self.fetchJob(db, id: next.id), refused: refused)
        } }
    }

    /// Marks a job done; only the process that runs it can.
    public func finishJob(_ id: String, bytes: Int64?, at time: Double, owner pid: Int32 = getpid()) throws {
        try run { try pool.write { db in
            try db.execute(sql: """
                UPDATE job SET state = 'done', owner_pid = NULL, last_error = NULL,
                bytes_done = COALESCE(?, bytes_done), updated_at = ? WHERE id = ? AND state = 'running' AND owner_pid = ?
                """, arguments: [bytes, time, id, pid])
        } }
    }

    /// Marks a running job failed; only the process that runs it can, so a failure reported
    /// late never overwrites what another worker has done with the job since.
    public func failJob(_ id: String, error: String, at time: Double, owner pid: Int32 = getpid()) throws {
        try run { try pool.write { db in
            try db.execute(sql: """
                UPDATE job SET state = 'failed', owner_pid = NULL, last_error = ?, updated_at = ?
                WHERE id = ? AND state = 'running' AND owner_pid = ?
                """, arguments: [error, time, id, pid])
        } }
    }

    /// Puts a running job back (interrupted); its partial data stays on disk.
    public func releaseJob(_ id: String, note: String?, at time: Double, owner pid: Int32 = getpid()) throws {
        try run { try pool.write { db in
            try db.execute(sql: """
                UPDATE job SET state = 'pending', owner_pid = NULL, last_error = COALESCE(?, last_error), updated_at = ?
                WHERE id = ? AND state = 'running' AND owner_pid = ?
                """, arguments: [note, time, id, pid])
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
