import ArgumentParser
import Foundation
import Manifest
import Reconciler
import Rendering

struct PlanCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "plan",
        abstract: "Show what apply would change in ckpts/ and loras/; changes nothing on disk.")

    @OptionGroup var configOptions: ConfigOptions

    @Option(name: [.short, .customLong("manifest")], help: ArgumentHelp("The manifest.", valueName: "file"),
            completion: .file(extensions: ["yaml", "yml"]))
    var manifest = "wgpm.yaml"

    @Flag(help: "Print the plan as JSON (format_version 1).")
    var json = false

    @Option(help: "text, json (as --json) or markdown (for a pull-request comment or step summary).")
    var format: OutputFormat = .text

    @Option(name: .short, help: ArgumentHelp("Also save the plan, with a fingerprint of its inputs, to this file.", valueName: "file"),
            completion: .file())
    var out: String?

    @Flag(help: "Exit 0 for no changes, 2 for changes, 3 when apply would be blocked (a conflict, no room).")
    var detailedExitcode = false

    @Flag(help: "Also remove files wgpm created that the manifest no longer wants.")
    var prune = false

    @Flag(help: "Ask the Hub again instead of using cached metadata.")
    var refresh = false

    @Flag(name: .shortAndLong, help: "List unchanged files too.")
    var verbose = false

    @Flag(help: "Fail when the manifest and its lock file disagree (for CI).")
    var locked = false

    @Option(help: ArgumentHelp("Plan against a machine state recorded with 'wgpm inventory --json' instead of this disk.", valueName: "file"),
            completion: .file(extensions: ["json"]))
    var inventory: String?

    func run() throws {
        let reconciler = try configOptions.reconciler(allowMissingConfig: true)
        let inputs = try Inputs(reconciler: reconciler, manifestPath: manifest)
        if locked && inputs.lock == nil {
            throw CommandError("--locked needs \(inputs.lockPath); run 'wgpm lock' and commit it")
        }
        let recorded = try inventory.map(RecordedInventory.load)
        let result = try reconciler.plan(manifest: inputs.manifest, catalog: inputs.catalog, refresh: refresh, prune: prune,
                                         lock: inputs.lock, lockPath: inputs.lockPath, locked: locked, recorded: recorded)
        for warning in result.warnings { printWarning("\(warning)") }
        let document = result.document(manifest: inputs.manifest.file)
        if let out { try SavedPlan(result, document: document, pruned: prune, config: reconciler.config.file).write(to: out) }
        if json || format == .json {
            print(try renderJSON(document), terminator: "")
        } else if format == .markdown {
            print(renderPlanMarkdown(result.plan, desired: result.desired, manifest: inputs.manifest.file,
                                     machine: inventory.map { ($0 as NSString).lastPathComponent }), terminator: "")
        } else {
            print(renderHuman(result.plan, style: terminalStyle, verbose: verbose, width: outputColumns,
                              partials: result.observed.partialBytes), terminator: "")
            if let out { print("Saved the plan to \(out); run 'wgpm apply \(out)' to carry it out.") }
        }
        if detailedExitcode && result.plan.isBlocked { throw ExitCode(3) }
        if detailedExitcode && result.plan.hasChanges { throw ExitCode(2) }
    }
}
