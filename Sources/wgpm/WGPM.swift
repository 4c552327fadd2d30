import ArgumentParser
import Foundation
import Planner
import HubClient
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
            --detailed-exitcode, 3 apply would refuse (not enough space, a conflict, a folder it \
            cannot write) with --detailed-exitcode, 1 any error, 64 wrong command-line usage.
            """,
        version: "wgpm 0.1.0",
        subcommands: [PlanCommand.self, ApplyCommand.self, WorkerCommand.self, QueueCommand.self,
                      ModelsCommand.self, ShowCommand.self, IndexCommand.self, LockCommand.self,
                      InventoryCommand.self, InitCommand.self, DoctorCommand.self, DiffCommand.self, TraceCommand.self])

    /// A reader that goes away (`wgpm plan | head`, a closed terminal) must give EPIPE on the
    /// next write, not kill wgpm with SIGPIPE while a job is half done.
    static func main() {
        signal(SIGPIPE, SIG_IGN)
        // Line by line even into a log: with `> log 2>&1` the plan must come before the
        // progress and errors that stderr writes at once.
        lineBufferStandardOutput()
        keepLargeBuffersUnmappedWhenFreed()
        // A mistyped command gets a suggestion, as a mistyped flag already does.
        let names = configuration.subcommands.map { $0.configuration.commandName ?? "" } + ["help"]
        let arguments = globalOptionsMovedAfterCommand(Array(CommandLine.arguments.dropFirst()))
        if let first = arguments.first, !first.hasPrefix("-"), !names.contains(first) {
            let hint = closest(to: first, in: names).map { "; did you mean '\($0)'?" } ?? "."
            printError("wgpm: error: unknown command '\(first)'\(hint) Run 'wgpm --help' for the list.")
            Glibc.exit(64)
        }
        do {
            var command = try parseAsRoot(arguments)
            try command.run()
        } catch {
            // Foundation's file errors are made plain. Exit codes are ArgumentParser's (usage
            // errors 64, ExitCode as given, the rest 1); help and --version print as it prints
            // them. Every error has the one prefix, "wgpm: error:".
            let ns = error as NSError
            let error = ns.domain == NSCocoaErrorDomain || ns.domain == NSPOSIXErrorDomain ? PlainError(error) : error
            let code = exitCode(for: error)
            let text = fullMessage(for: error)
            if code == .success || text.isEmpty { exit(withError: error) }
            let message = text.hasPrefix("Error: ") ? "wgpm: error: " + lowercasedFirstWord(String(text.dropFirst("Error: ".count))) : text
            printError(wrappedForStandardError(message))
            Glibc.exit(code.rawValue)
        }
    }
}

/// `--config FILE` given before the subcommand (`wgpm --config x.yaml plan`) is moved after it,
/// where each subcommand declares it.
func globalOptionsMovedAfterCommand(_ arguments: [String]) -> [String] {
    var rest = arguments
    var moved: [String] = []
    while let first = rest.first, first == "--config" || first.hasPrefix("--config=") {
        moved.append(rest.removeFirst())
        if first == "--config", !rest.isEmpty { moved.append(rest.removeFirst()) }
    }
    guard !moved.isEmpty, let command = rest.first, !command.hasPrefix("-") else { return arguments }
    return [command] + moved + rest.dropFirst()
}
