import ArgumentParser
import Foundation
import Planner
import Reconciler
import Rendering

/// How `plan` and `diff` print their result.
enum OutputFormat: String, ExpressibleByArgument, CaseIterable {
    case text, json, markdown

    /// Help lists each value once, with what it is for.
    var defaultValueDescription: String {
        switch self {
        case .text: "for a person at a terminal"
        case .json: "versioned JSON, as --json"
        case .markdown: "for a pull-request comment or a CI step summary"
        }
    }
}

struct DiffCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "diff",
        abstract: "Show what changes between two manifests or locks: models, files, bytes, pins, settings.",
        discussion: """
            BASE and HEAD are each a lock (wgpm.lock) or a manifest (wgpm.yaml). Two locks need \
            no config, no Wan2GP directory and no network: in CI, compare the pull request's base \
            lock ('git show origin/main:wgpm.lock > base.lock') with its head lock. A manifest needs \
            the catalog (wan2gp_directory in a config) and uses the lock next to it when there is one. \
            Exit 0 when the report was made (changes or not), 1 on an error.
            """)

    @OptionGroup var configOptions: ConfigOptions

    @Argument(help: "The manifest or lock before the change.", completion: .file())
    var base: String

    @Argument(help: "The manifest or lock after the change.", completion: .file())
    var head: String

    @Option(help: "How to print the diff (JSON: format_version \(DiffDocument.version)).")
    var format: OutputFormat = .text

    @Flag(help: "The same as --format json.")
    var json = false

    @Option(help: ArgumentHelp("Also check HEAD's plan against a machine state recorded with 'wgpm inventory --json' (free space, conflicts).",
                               valueName: "file"), completion: .file(extensions: ["json"]))
    var inventory: String?

    func run() throws {
        var reconciler: Reconciler?
        func read(_ path: String) throws -> DiffInput {
            switch try diffInputKind(path) {
            case .lock: return try DiffInput.lock(path)
            case .manifest:
                // Only a manifest needs the config, the catalog and the state cache.
                if reconciler == nil { reconciler = try configOptions.reconciler(allowMissingConfig: true) }
                guard let reconciler, !reconciler.config.wan2gpDirectory.isEmpty else {
                    throw CommandError("\(path) is not a lock, so it is read as a manifest, and a manifest needs the catalog: set wan2gp_directory in a config (see config.yaml.example), or compare locks ('wgpm lock' writes one next to the manifest)")
                }
                return try reconciler.diffInput(manifestAt: path, catalog: try reconciler.loadCatalog())
            }
        }
        let baseInput = try read(base)
        let headInput = try read(head)
        for warning in Set(baseInput.warnings + headInput.warnings).sorted() { printWarning(warning) }
        let diff = diffManifests(base: baseInput.side, head: headInput.side)
        var space: SpaceCheck?
        if let inventory {
            let recorded = try RecordedInventory.load(inventory)
            let reserve = try reconciler?.config.minFreeBytes ?? configOptions.load(allowMissing: true).minFreeBytes
            let plan = makePlan(desired: headInput.side.files, observed: recorded.observed(for: headInput.side.files),
                                options: PlanOptions(reserveBytes: reserve))
            space = SpaceCheck(machine: (inventory as NSString).lastPathComponent, plan: plan)
        }
        let baseSource = DiffSource(file: base, kind: baseInput.kind.rawValue)
        let headSource = DiffSource(file: head, kind: headInput.kind.rawValue)
        switch json ? .json : format {
        case .json: print(try renderJSON(DiffDocument(diff, base: baseSource, head: headSource, space: space)), terminator: "")
        case .markdown: print(renderDiffMarkdown(diff, base: baseSource, head: headSource, space: space), terminator: "")
        case .text: print(renderDiffHuman(diff, base: baseSource, head: headSource, space: space), terminator: "")
        }
    }
}
