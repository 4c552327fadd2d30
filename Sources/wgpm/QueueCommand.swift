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
            let document = QueueStatusDocument(jobs: try state.jobs().map { j in
                QueueStatusDocument.Job(id: j.id, kind: j.kind, path: j.path, state: j.state.rawValue, attempts: j.attempts,
                                        bytesDone: j.bytesDone, bytesTotal: j.bytesTotal, lastError: j.lastError)
            })
            print(json ? try renderJSON(document) : renderQueueStatus(document, all: all, width: outputColumns), terminator: "")
        }
    }
}
