import ArgumentParser
import Foundation
import Planner
import Reconciler
import Rendering

struct InventoryCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "inventory",
        abstract: "Record this machine's ckpts/ and loras/ (paths, sizes, hashes) for 'wgpm plan --inventory'.")

    @OptionGroup var configOptions: ConfigOptions

    @Flag(help: "Print JSON (format_version 1); the only format for now.")
    var json = false

    @Option(name: .short, help: ArgumentHelp("Write to this file instead of standard output.", valueName: "file"), completion: .file())
    var out: String?

    func run() throws {
        let recorded = try configOptions.reconciler().recordInventory()
        if let out {
            try recorded.write(to: out)
            let files = recorded.paths.values.filter { if case .missing = $0 { return false } else { return true } }.count
            print("Recorded \(counted(files, "path")) of ckpts/ and loras/ in \(out); plan against it with 'wgpm plan --inventory \(out)'.")
        } else {
            print(try recorded.render(), terminator: "")
        }
    }
}
