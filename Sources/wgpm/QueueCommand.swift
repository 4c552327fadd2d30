import ArgumentParser
import Foundation
import Planner
import Rendering
import State

struct QueueCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "queue",
        abstract: "Show the queue's jobs, retry failed ones, or clear finished ones.")

    enum Verb: String, ExpressibleByArgument, CaseIterable { case status, retry, clear }

    @OptionGroup var configOptions: ConfigOptions

    @Argument(help: "What to do: status lists the jobs, retry makes failed jobs pending again, clear removes finished jobs.")
    var verb: Verb = .status

    @Flag(help: "With clear: also remove failed jobs.")
    var failed = false

    @Flag(help: "Print JSON (format_version 1).")
    var json = false

    @Flag(help: "With status: list finished jobs too (they are counted, not listed, by default).")
    var all = false

    func run() throws {
        let config = try configOptions.load()
        let state = try StateDatabase(directory: config.stateDirectory)
        let now = Date().timeIntervalSince1970
        switch verb {
        case .retry:
            let n = try state.retryFailedJobs(at: now)
            print("\(counted(n, "failed job")) \(n == 1 ? "is" : "are") pending again; run 'wgpm worker' to carry them out.")
        case .clear:
            print("Removed \(counted(try state.clearJobs(includeFailed: failed), "finished job")).")
        case .status:
            let jobs = try state.jobs()
            if json {
                let list: [[String: Any]] = jobs.map { j in
                    var o: [String: Any] = ["id": j.id, "kind": j.kind, "path": j.path, "state": j.state.rawValue,
                                            "attempts": j.attempts, "bytes_done": j.bytesDone]
                    if let t = j.bytesTotal { o["bytes_total"] = t }
                    if let e = j.lastError { o["last_error"] = e }
                    return o
                }
                print(try renderJSON(["format_version": 1, "jobs": list]), terminator: "")
                return
            }
            var counts: [JobRecord.State: Int] = [:]
            for j in jobs { counts[j.state, default: 0] += 1 }
            // What needs attention first: failed, then running, pending, and done (with --all).
            let order: [JobRecord.State: Int] = [.failed: 0, .running: 1, .pending: 2, .done: 3]
            let shown = jobs.filter { all || $0.state != .done }.enumerated()
                .sorted { (order[$0.element.state]!, $0.offset) < (order[$1.element.state]!, $1.offset) }.map(\.element)
            if !shown.isEmpty { print("  state    kind      attempts  progress               path") }
            for j in shown {
                let progress = j.bytesTotal.map { "\(formatBytes(j.bytesDone)) / \(formatBytes($0))" } ?? formatBytes(j.bytesDone)
                var line = "  " + [j.state.rawValue.padding(toLength: 8, withPad: " ", startingAt: 0),
                                   j.kind.padding(toLength: 9, withPad: " ", startingAt: 0),
                                   String(j.attempts).padding(toLength: 9, withPad: " ", startingAt: 0),
                                   progress.padding(toLength: max(22, progress.count), withPad: " ", startingAt: 0),
                                   j.path].joined(separator: " ")
                if let e = j.lastError, j.state != .done { line += "\n      \(e)" }
                print(line)
            }
            if !all, let done = counts[.done], done > 0 { print("  (\(counted(done, "finished job")) not listed; --all lists them)") }
            print("Queue: " + JobRecord.State.allCases.map { "\(counts[$0] ?? 0) \($0.rawValue)" }.joined(separator: ", ") + ".")
        }
    }
}
