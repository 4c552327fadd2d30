import ArgumentParser
import Catalog
import Foundation
import Planner
import Reconciler
import Rendering

struct ModelsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "models",
        abstract: "List the catalog: id, files, size (once a plan has asked the Hub), name.",
        discussion: "After the name: the architecture when it differs from the id, 'pair' for a high/low-noise pair, 'hidden' for a model Wan2GP does not list. --json has every field.")

    @OptionGroup var configOptions: ConfigOptions

    @Argument(help: "Show only models whose id, name or architecture contains this text.")
    var filter: String?

    @Flag(help: "Print JSON (format_version 1).")
    var json = false

    func run() throws {
        let reconciler = try configOptions.reconciler()
        let catalog = try reconciler.loadCatalog()
        let (entries, skipped) = catalog.summaries(filter: filter, sizes: reconciler.knownSizes)
        for problem in skipped { printWarning(problem) }
        if let warning = catalog.selection?.warning { printWarning(warning) }
        if json {
            let document = ModelsDocument(wan2gp: catalog.selection?.entry, models: entries)
            print(try renderJSON(document), terminator: "")
            return
        }
        print(renderModels(entries, width: outputColumns), terminator: "")
        if entries.isEmpty, let filter {
            let hint = closest(to: filter, in: catalog.ids).map { " Did you mean \($0)?" } ?? ""
            print("No model's id, name or architecture contains '\(filter)'.\(hint) 'wgpm models' lists all \(catalog.ids.count).")
            return
        }
        print("\(counted(entries.count, "model")).")
        if let selection = catalog.selection { print("wan2gp: \(selection.summary)") }
    }
}
