import ArgumentParser
import Foundation
import Catalog
import Reconciler
#if canImport(Glibc)
import Glibc
#endif

@main
struct WGPM: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "wgpm",
        abstract: "Keeps a Wan2GP installation's ckpts/ and loras/ as a manifest declares.",
        discussion: """
            Exit codes: 0 success (no changes with --detailed-exitcode), 2 changes present with \
            --detailed-exitcode, 1 any error, 64 wrong command-line usage.
            """,
        version: "wgpm 0.1.0",
        subcommands: [PlanCommand.self, ApplyCommand.self, WorkerCommand.self, QueueCommand.self,
                      ModelsCommand.self, ShowCommand.self, IndexCommand.self, LockCommand.self,
                      InventoryCommand.self, InitCommand.self, DoctorCommand.self, DiffCommand.self, TraceCommand.self])

    /// A reader that goes away (`wgpm plan | head`, a closed terminal) must give EPIPE on the
    /// next write, not kill wgpm with SIGPIPE while a job is half done.
    static func main() {
        signal(SIGPIPE, SIG_IGN)
        // A mistyped command gets a suggestion, as a mistyped flag already does.
        let names = configuration.subcommands.map { $0.configuration.commandName ?? "" } + ["help"]
        if let first = CommandLine.arguments.dropFirst().first, !first.hasPrefix("-"), !names.contains(first) {
            let hint = closest(to: first, in: names).map { "; did you mean '\($0)'?" } ?? "."
            printError("wgpm: error: unknown command '\(first)'\(hint) Run 'wgpm --help' for the list.")
            Glibc.exit(64)
        }
        do {
            var command = try parseAsRoot()
            try command.run()
        } catch {
            // Foundation's file errors are made plain; everything else is reported as
            // ArgumentParser does (usage errors 64, ExitCode as given, the rest 1).
            let ns = error as NSError
            exit(withError: ns.domain == NSCocoaErrorDomain || ns.domain == NSPOSIXErrorDomain ? PlainError(error) : error)
        }
    }
}
