import ArgumentParser
import Foundation
import Planner
import Rendering
import State

struct QueueCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "queue",
        abstract: "Show the queue's jobs, retry failed ones, or clear finished ones.",
        discussion: "status lists the jobs; retry makes failed jobs pending again; clear removes finished jobs (with --failed, failed ones too).")

    enum Verb: String, ExpressibleByArgument, CaseIterable {
        case status, retry, clear

        var defaultValueDescription: String {
            switch self {
            case .status: "list the jobs"
            case .retry: "make failed jobs pending again"
            case .clear: "remove finished jobs"
            }
        }
    }

    @OptionGroup var configOptions: ConfigOptions

    @Argument(help: "What to do.")
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
            print(n == 0 ? "No failed jobs to retry ('wgpm queue status' lists the jobs)."
                  : "\(counted(n, "failed job")) \(n == 1 ? "is" : "are") pending again; run 'wgpm worker' to carry them out.")
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
