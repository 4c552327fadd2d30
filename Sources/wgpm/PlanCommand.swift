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

    @Option(name: [.short, .customLong("manifest")], help: "The manifest.")
    var manifest = "wgpm.yaml"

    @Flag(help: "Print the plan as JSON (format_version 1).")
    var json = false

    @Option(name: .short, help: "Also save the plan, with a fingerprint of its inputs, to this file.")
    var out: String?

    @Flag(help: "Exit 2 when there are changes, 0 when there are none.")
    var detailedExitcode = false

    @Flag(help: "Also remove files wgpm created that the manifest no longer wants.")
    var prune = false

    @Flag(help: "Ask the Hub again instead of using cached metadata.")
    var refresh = false

    @Flag(name: .shortAndLong, help: "List unchanged files too.")
    var verbose = false

    @Flag(help: "Fail when the manifest and its lock file disagree (for CI).")
    var locked = false

    @Option(help: "Plan against a machine state recorded with 'wgpm inventory --json' instead of this disk.")
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
        let manifest = inputs.manifest
        for warning in result.warnings { printError("wgpm: warning: \(warning)") }
        let stats: [String: Any] = [
            "hub_requests": result.metadata.hubRequests,
            "paths_observed": result.inventory.pathsObserved,
            "files_hashed": result.inventory.filesHashed,
            "bytes_hashed": result.inventory.bytesHashed,
            "hash_cache_hits": result.inventory.hashCacheHits,
            "source_files": result.reuse.sourceFiles,
            "candidates_considered": result.reuse.candidatesConsidered,
            "source_files_hashed": result.reuse.filesHashed,
            "source_bytes_hashed": result.reuse.bytesHashed,
            "bytes_reused": result.plan.summary.reusedBytes,
        ]
        var object = planJSONObject(result.plan, extra: ["stats": stats, "manifest": manifest.file])
        if let out {
            object["fingerprint"] = result.fingerprint
            object["pruned"] = prune
            object["observed"] = Dictionary(uniqueKeysWithValues: result.observed.paths.map { ($0.key, describe($0.value)) })
            try writeAtomically(try renderJSON(object), to: out)
            object["fingerprint"] = nil
            object["pruned"] = nil
            object["observed"] = nil
        }
        if json {
            print(try renderJSON(object), terminator: "")
        } else {
            print(renderHuman(result.plan, style: terminalStyle, verbose: verbose), terminator: "")
            if let out { print("Saved the plan to \(out); run 'wgpm apply \(out)' to carry it out.") }
        }
        if detailedExitcode && result.plan.hasChanges { throw ExitCode(2) }
    }
}
