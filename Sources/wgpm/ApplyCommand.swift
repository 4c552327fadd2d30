import ArgumentParser
import Executor
import Foundation
import Manifest
import Planner
import Reconciler
import Rendering

struct ApplyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "apply",
        abstract: "Carry out a plan through the persistent queue: downloads, links, replacements.")

    @OptionGroup var configOptions: ConfigOptions
    @OptionGroup var queueOptions: QueueOptions

    @Argument(help: "A plan saved with 'wgpm plan -o'; it is applied only while it still matches the machine.", completion: .file(extensions: ["json"]))
    var planFile: String?

    @Option(name: [.short, .customLong("manifest")], help: ArgumentHelp("The manifest (default: the saved plan's, else wgpm.yaml).", valueName: "file"),
            completion: .file(extensions: ["yaml", "yml"]))
    var manifest: String?

    @Flag(help: "Do not ask for confirmation.")
    var yes = false

    @Flag(help: "Only add the jobs to the queue; 'wgpm worker' runs them.")
    var enqueueOnly = false

    @Flag(help: "Also remove files wgpm created that the manifest no longer wants.")
    var prune = false

    @Flag(help: "Fail when the manifest and its lock file disagree.")
    var locked = false

    func run() throws {
        // A saved plan names its manifest and config, so it applies alone from any folder.
        let saved = try planFile.map(SavedPlan.load)
        let reconciler = try configOptions.reconciler(savedConfig: saved?.config)
        let inputs = try Inputs(reconciler: reconciler, manifestPath: self.manifest ?? saved?.manifest ?? "wgpm.yaml")
        let manifest = inputs.manifest
        let catalog = inputs.catalog
        let plan: PlanResult
        if let planFile, let saved {
            plan = try reconciler.plan(manifest: manifest, catalog: catalog, prune: saved.pruned || prune,
                                       lock: inputs.lock, lockPath: inputs.lockPath, locked: locked)
            if let reason = saved.stalenessReason(fresh: plan) {
                printError("wgpm: error: \(planFile) is stale: \(reason). Run 'wgpm plan -o \(planFile)' again and review it.")
                throw ExitCode(1)
            }
            try refuseIfBlocked(plan.plan)
        } else {
            plan = try reconciler.plan(manifest: manifest, catalog: catalog, prune: prune,
                                       lock: inputs.lock, lockPath: inputs.lockPath, locked: locked)
            for warning in plan.warnings { printWarning(warning) }
            print(renderHuman(plan.plan, style: terminalStyle, width: outputColumns, partials: plan.observed.partialBytes), terminator: "")
            try refuseIfBlocked(plan.plan, shown: true)
            if plan.plan.hasChanges && !yes {
                guard isatty(STDIN_FILENO) == 1 else {
                    printError("wgpm: error: refusing to apply without confirmation: there is no terminal to ask. Review the plan and pass --yes, or apply a saved plan file.")
                    throw ExitCode(1)
                }
                print("Apply these changes? Only 'yes' is accepted: ", terminator: "")
                guard readLine()?.trimmingCharacters(in: .whitespaces) == "yes" else {
                    print("Apply cancelled; nothing was changed.")
                    throw ExitCode(1)
                }
            }
        }
        let jobs = JobSpec.from(plan.plan, mapper: reconciler.mapper)
        try checkSpace(enqueuing: jobs, into: reconciler.state, fileSystem: reconciler.context.fileSystem,
                       reserve: reconciler.config.minFreeBytes,
                       confinement: Confinement(mapper: reconciler.mapper, linkedFolders: reconciler.config.linkedFolders))
        let added = try reconciler.state.enqueue(
            jobs.map { ($0.id, $0.kind.rawValue, $0.path, $0.encoded(), $0.size) }, at: reconciler.context.clock())
        let conflicts = plan.plan.actions.filter { $0.kind == .conflict }
        if enqueueOnly {
            print("Enqueued \(added) new job\(added == 1 ? "" : "s") (\(jobs.count) in this plan); run 'wgpm worker' to carry them out.")
            return
        }
        let nothingPending = try reconciler.state.jobs().allSatisfy { $0.state != .pending }
        if jobs.isEmpty && conflicts.isEmpty && nothingPending {
            print("No changes. Nothing to apply.")
            return
        }
        let ok = try runQueue(reconciler: reconciler, lockTimeout: queueOptions.lockTimeout, follow: false,
                              ownJobs: jobs.map(\.id))
        for c in conflicts { printWarning("conflict left as it is: \(c.path) (\(c.reason))") }
        if !ok || !conflicts.isEmpty { throw ExitCode(1) }
    }
}

/// A folder this user cannot write stops apply before any job is queued: every write below it
/// would fail, one job at a time.
/// `shown`: the plan above already says why (its BLOCKED lines), so it is not said twice.
func refuseIfBlocked(_ plan: Plan, shown: Bool = false) throws {
    guard !plan.blockers.isEmpty else { return }
    if shown {
        printError("wgpm: error: apply refused: the BLOCKED line above says what to fix; nothing was queued.")
    } else {
        for blocker in plan.blockers { printError(wrappedForStandardError("wgpm: error: " + blocker)) }
    }
    throw ExitCode(1)
}
