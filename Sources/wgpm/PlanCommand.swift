import ArgumentParser
import Foundation
import Manifest
import Planner
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

    @Option(help: "How to print the plan.")
    var format: OutputFormat = .text

    @Option(name: .short, help: ArgumentHelp("Also save the plan, with a fingerprint of its inputs, to this file.", valueName: "file"),
            completion: .file())
    var out: String?

    @Flag(help: "Exit 0 for no changes, 2 for changes, 3 when apply would be blocked (a conflict, no room, a folder it cannot write).")
    var detailedExitcode = false

    @Flag(help: "Also remove files wgpm created that the manifest no longer wants.")
    var prune = false

    @Flag(help: "Ask the Hub again instead of using cached metadata.")
    var refresh = false

    @Flag(name: .shortAndLong, help: "List unchanged files too.")
    var verbose = false

    @Flag(help: "Fail when the manifest and its lock file disagree (for CI).")
    var locked = false

    @Option(help: ArgumentHelp("Plan against a machine state recorded with 'wgpm inventory --json' instead of this disk; repeat it, or name a folder of them, for one summary per machine.", valueName: "file"),
            completion: .file(extensions: ["json"]))
    var inventory: [String] = []

    func run() throws {
        let reconciler = try configOptions.reconciler(allowMissingConfig: true)
        let inputs = try Inputs(reconciler: reconciler, manifestPath: manifest)
        if locked && inputs.lock == nil {
            throw CommandError("--locked needs \(inputs.lockPath); run 'wgpm lock' and commit it")
        }
        let files = try fleetInventoryFiles(inventory)
        if files.count > 1 || inventory.contains(where: isFolder) {
            return try runFleet(reconciler: reconciler, inputs: inputs, files: files)
        }
        let inventory = files.first
        let recorded = try inventory.map(RecordedInventory.load)
        let result = try reconciler.plan(manifest: inputs.manifest, catalog: inputs.catalog, refresh: refresh, prune: prune,
                                         lock: inputs.lock, lockPath: inputs.lockPath, locked: locked, recorded: recorded)
        for warning in result.warnings { printWarning(warning) }
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

extension PlanCommand {
    /// Several recorded machines: one plan each, then one summary per machine and the mirror total.
    func runFleet(reconciler: Reconciler, inputs: Inputs, files: [String]) throws {
        guard !files.isEmpty else { throw CommandError("--inventory names a folder with no .json inventories in it") }
        var plans: [(name: String, plan: Plan)] = []
        for file in files {
            let recorded = try RecordedInventory.load(file)
            let result = try reconciler.plan(manifest: inputs.manifest, catalog: inputs.catalog, refresh: refresh, prune: prune,
                                             lock: inputs.lock, lockPath: inputs.lockPath, locked: locked, recorded: recorded)
            for warning in result.warnings { printWarning("\((file as NSString).lastPathComponent): \(warning)") }
            plans.append(((file as NSString).lastPathComponent, result.plan))
        }
        let report = FleetReport(plans)
        if json || format == .json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            print(String(decoding: try encoder.encode(report), as: UTF8.self))
        } else if format == .markdown {
            print(renderFleetMarkdown(report), terminator: "")
        } else {
            print(renderFleetText(report), terminator: "")
        }
        if detailedExitcode && report.isBlocked { throw ExitCode(3) }
        if detailedExitcode && plans.contains(where: { $0.plan.hasChanges }) { throw ExitCode(2) }
    }
}

private func isFolder(_ path: String) -> Bool {
    var dir: ObjCBool = false
    return FileManager.default.fileExists(atPath: path, isDirectory: &dir) && dir.boolValue
}

/// The inventory files named: each file as given, each folder's `*.json` files sorted by name.
func fleetInventoryFiles(_ names: [String]) throws -> [String] {
    var out: [String] = []
    for name in names {
        if isFolder(name) {
            let entries = try FileManager.default.contentsOfDirectory(atPath: name).filter { $0.hasSuffix(".json") }.sorted()
            out += entries.map { (name as NSString).appendingPathComponent($0) }
        } else {
            out.append(name)
        }
    }
    return out
}
