import ArgumentParser
import Catalog
import Foundation
import Planner
import Reconciler
import Rendering

struct ModelsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "models",
        abstract: "List the catalog: id, name, architecture, slots, files.")

    @OptionGroup var configOptions: ConfigOptions

    @Argument(help: "Show only models whose id, name or architecture contains this text.")
    var filter: String?

    @Flag(help: "Print JSON (format_version 1).")
    var json = false

    func run() throws {
        let reconciler = try configOptions.reconciler()
        let catalog = try reconciler.loadCatalog()
        let (entries, skipped) = catalog.summaries(filter: filter, sizes: reconciler.knownSizes)
        for problem in skipped { printError("wgpm: warning: \(problem)") }
        if json {
            let list: [[String: Any]] = entries.map { e in
                var o: [String: Any] = ["id": e.id, "name": e.name, "architecture": e.architecture,
                                        "slots": e.slots, "files": e.files, "visible": e.visible]
                if let b = e.bytes { o["bytes"] = b }
                return o
            }
            print(try renderJSON(["format_version": 1, "models": list]), terminator: "")
            return
        }
        let idWidth = min(entries.map(\.id.count).max() ?? 10, 44)
        for e in entries {
            let id = e.id.padding(toLength: max(idWidth, e.id.count), withPad: " ", startingAt: 0)
            let size = e.bytes.map { "  " + formatBytes($0) } ?? ""
            print("\(id)  \(e.architecture)  \(e.slots)  \(e.files) files\(size)  \(e.name)\(e.visible ? "" : " (hidden)")")
        }
        if entries.isEmpty, let filter {
            let hint = closest(to: filter, in: catalog.ids).map { " Did you mean \($0)?" } ?? ""
            print("No model's id, name or architecture contains '\(filter)'.\(hint) 'wgpm models' lists all \(catalog.ids.count).")
            return
        }
        print("\(counted(entries.count, "model")).")
    }
}
