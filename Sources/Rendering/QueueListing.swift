import Planner

/// `wgpm queue status --json`, format_version 1: every job, in the queue's order.
public struct QueueStatusDocument: Codable, Equatable, Sendable {
    public static let version = 1

    public struct Job: Codable, Equatable, Sendable {
        public var id: String
        public var kind: String
        public var path: String
        /// `pending`, `running`, `done` or `failed`.
        public var state: String
        public var attempts: Int
        public var bytesDone: Int64
        public var bytesTotal: Int64?
        public var lastError: String?

        enum CodingKeys: String, CodingKey {
            case id, kind, path, state, attempts, bytesDone = "bytes_done", bytesTotal = "bytes_total", lastError = "last_error"
        }

        public init(id: String, kind: String, path: String, state: String, attempts: Int, bytesDone: Int64,
                    bytesTotal: Int64?, lastError: String?) {
            self.id = id
            self.kind = kind
            self.path = path
            self.state = state
            self.attempts = attempts
            self.bytesDone = bytesDone
            self.bytesTotal = bytesTotal
            self.lastError = lastError
        }
    }

    public var formatVersion: Int
    public var jobs: [Job]

    enum CodingKeys: String, CodingKey { case formatVersion = "format_version", jobs }

    public init(jobs: [Job]) {
        formatVersion = Self.version
        self.jobs = jobs
    }
}

/// What needs attention first: failed, then running, pending, and done.
private let stateOrder = ["failed": 0, "running": 1, "pending": 2, "done": 3]
private let jobStates = ["pending", "running", "done", "failed"]

/// The human form of `queue status`: a table of the jobs that are not done (every job with
/// `all`), failed and running first, each failure's reason under its row, wrapped to `width`;
/// then the counts. The reason does not repeat the row's path.
public func renderQueueStatus(_ document: QueueStatusDocument, all: Bool, width: Int = 80) -> String {
    let shown = document.jobs.enumerated()
        .filter { all || $0.element.state != "done" }
        .sorted { (stateOrder[$0.element.state] ?? 9, $0.offset) < (stateOrder[$1.element.state] ?? 9, $1.offset) }
        .map(\.element)
    var lines: [String] = []
    if !shown.isEmpty {
        // A finished job's progress is its size: the fraction says nothing more.
        let progress = shown.map { job in
            job.state == "done" ? formatBytes(job.bytesTotal ?? job.bytesDone)
                : job.bytesTotal.map { "\(formatBytes(job.bytesDone)) / \(formatBytes($0))" } ?? formatBytes(job.bytesDone)
        }
        let columns = [max(5, shown.map(\.state.count).max() ?? 0), max(4, shown.map(\.kind.count).max() ?? 0),
                       4, max(8, progress.map(\.count).max() ?? 0)]
        func row(_ cells: [String], _ path: String) -> String {
            "  " + zip(cells, columns).map { $0.padding(toLength: $1, withPad: " ", startingAt: 0) }.joined(separator: "  ")
                + "  " + path
        }
        lines.append(row(["STATE", "KIND", "RUNS", "PROGRESS"], "PATH"))
        for (job, shownProgress) in zip(shown, progress) {
            let cells = row([job.state, job.kind, String(job.attempts), shownProgress], "")
            lines += rowEndingInPath(cells, job.path, width: width)
            if let error = job.lastError, job.state != "done" {
                lines += wrapped(withoutPath(job.path, error), indent: 6, hanging: 2, width: width)
            }
        }
    }
    var counts: [String: Int] = [:]
    for job in document.jobs { counts[job.state, default: 0] += 1 }
    if document.jobs.isEmpty {
        lines.append("  (no jobs: 'wgpm apply' plans and queues them; 'wgpm worker' runs queued ones)")
    } else if !all, let done = counts["done"], done > 0 {
        lines.append("  (\(counted(done, "finished job")) not listed; --all lists them)")
    }
    lines.append("Queue: " + jobStates.map { "\(counts[$0] ?? 0) \($0)" }.joined(separator: ", ") + ".")
    return lines.joined(separator: "\n") + "\n"
}

/// `error` without a leading "path: ", for a line that already names the path.
public func withoutPath(_ path: String, _ error: String) -> String {
    error.hasPrefix(path + ": ") ? String(error.dropFirst(path.count + 2)) : error
}

/// A table row whose last column is a path: on one line when it fits `width`, else the path on
/// the next line, 4 columns in (whole: a path is what a person acts on).
public func rowEndingInPath(_ lead: String, _ path: String, width: Int) -> [String] {
    lead.count + path.count <= width ? [lead + path] : [trimmedEnd(lead), "    " + path]
}

/// The file table of `wgpm show`: role, size (or "?"), path, transformer first as given.
public func renderShowTable(_ rows: [(role: String, size: String, path: String)], width: Int = 80) -> String {
    let roleWidth = max(4, rows.map(\.role.count).max() ?? 0)
    let sizeWidth = max(4, rows.map(\.size.count).max() ?? 0)
    func cell(_ s: String, _ w: Int) -> String { s.padding(toLength: max(w, s.count), withPad: " ", startingAt: 0) }
    var lines = ["  " + cell("ROLE", roleWidth) + "  " + "SIZE".leftPad(sizeWidth) + "  PATH"]
    for row in rows {
        lines += rowEndingInPath("  " + cell(row.role, roleWidth) + "  " + row.size.leftPad(sizeWidth) + "  ", row.path, width: width)
    }
    return lines.joined(separator: "\n") + "\n"
}
