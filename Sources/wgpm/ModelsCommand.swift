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
        let entries = try modelSummaries(catalog, filter: filter, sizes: reconciler.knownSizes)
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

struct ModelSummary {
    var id: String
    var name: String
    var architecture: String
    /// "single", or "high/low-noise pair" when a second transformer slot exists.
    var slots: String
    var files: Int
    var bytes: Int64?
    var visible: Bool
}

func modelSummaries(_ catalog: Catalog, filter: String?, sizes: (([RequiredFile]) -> Int64?)?) throws -> [ModelSummary] {
    let needle = filter?.lowercased()
    var out: [ModelSummary] = []
    for id in catalog.ids {
        let def = catalog.models[id]!
        if let needle, ![id, def.name, def.architecture].contains(where: { $0.lowercased().contains(needle) }) { continue }
        let files = try catalog.expand(id, settings: ModelSettings())
        let pair = def.model["URLs2"] != nil
        out.append(ModelSummary(id: id, name: def.name, architecture: def.architecture,
                                slots: pair ? "high/low-noise pair" : "single", files: files.count,
                                bytes: sizes?(files), visible: def.visible))
    }
    return out
}
