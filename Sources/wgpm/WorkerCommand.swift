import ArgumentParser
import Foundation

struct WorkerCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "worker",
        abstract: "Run the queued jobs (from 'wgpm apply --enqueue-only' or an interrupted apply).")

    @OptionGroup var configOptions: ConfigOptions
    @OptionGroup var queueOptions: QueueOptions

    @Flag(help: "Keep running and pick up new jobs as they are enqueued, until Ctrl-C.")
    var follow = false

    func run() throws {
        let reconciler = try configOptions.reconciler()
        if !(try runQueue(reconciler: reconciler, lockTimeout: queueOptions.lockTimeout, follow: follow)) { throw ExitCode(1) }
    }
}
