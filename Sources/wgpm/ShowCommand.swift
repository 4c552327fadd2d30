import ArgumentParser
import Catalog
import Foundation
import Planner
import Reconciler
import Rendering

struct ShowCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "show",
        abstract: "The exact files a model expands to, with sizes when known.")

    @OptionGroup var configOptions: ConfigOptions

    @Argument(help: "A model id (see 'wgpm models').")
    var model: String

    @Option(help: "int8 | fp8 | bf16") var transformerQuantization: ModelSettings.Quantization = .int8
    @Option(help: "int8 | bf16") var textEncoderQuantization: ModelSettings.TextEncoderQuantization = .int8
    @Option(help: "bf16 | fp16") var dtype: ModelSettings.DType = .bf16
    @Flag(inversion: .prefixedNo, help: "Include the support files Wan2GP's code adds.") var sharedFiles = true
    @Flag(help: "Every variant of every slot.") var allVariants = false
    @Flag(help: "Print JSON (format_version 1).") var json = false

    func run() throws {
        let reconciler = try configOptions.reconciler()
        let catalog = try reconciler.loadCatalog()
        let settings = ModelSettings(transformerQuantization: transformerQuantization,
                                     textEncoderQuantization: textEncoderQuantization, dtype: dtype,
                                     sharedFiles: sharedFiles, allVariants: allVariants)
        let files = try catalog.expand(model, settings: settings).sorted { $0.path < $1.path }
        let sizes = reconciler.cachedSizes(files)
        if json {
            let list: [[String: Any]] = files.map { f in
                var o: [String: Any] = ["path": f.path, "url": f.url, "role": f.role.rawValue]
                if !f.downloadable { o["wan2gp_downloads"] = false }
                if let s = sizes[f.path] { o["size"] = s }
                return o
            }
            print(try renderJSON(["format_version": 1, "model": model, "files": list]), terminator: "")
            return
        }
        let def = catalog.models[model]!
        print("\(model): \(def.name) (architecture \(def.architecture))")
        for f in files {
            let size = sizes[f.path].map(formatBytes) ?? "?"
            print("  \(f.path)  \(size)  [\(f.role.rawValue)]\(f.downloadable ? "" : " (not Wan2GP's own download)")")
        }
        let known = files.compactMap { sizes[$0.path] }
        print("\(files.count) files" + (known.isEmpty ? "; sizes unknown until a plan has asked the Hub." : ", \(formatBytes(known.reduce(0, +))) known"))
    }
}

extension ModelSettings.Quantization: ExpressibleByArgument {}
extension ModelSettings.TextEncoderQuantization: ExpressibleByArgument {}
extension ModelSettings.DType: ExpressibleByArgument {}
