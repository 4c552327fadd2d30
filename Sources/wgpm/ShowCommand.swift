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

    @Argument(help: "A model id (see 'wgpm models').", completion: .custom { _, _, prefix in modelIDCompletions(prefix) })
    var model: String

    @Option(help: "The transformer's quantization; a model without that variant gets the one Wan2GP takes.") var transformerQuantization: ModelSettings.Quantization = .int8
    @Option(help: "The text encoder's quantization.") var textEncoderQuantization: ModelSettings.TextEncoderQuantization = .int8
    @Option(help: "The weights' data type.") var dtype: ModelSettings.DType = .bf16
    @Flag(inversion: .prefixedNo, help: "Include the support files Wan2GP's code adds.") var sharedFiles = true
    @Flag(help: "Every variant of every slot.") var allVariants = false
    @Flag(help: "Print JSON (format_version 1).") var json = false

    func run() throws {
        let reconciler = try configOptions.reconciler()
        let catalog = try reconciler.loadCatalog()
        let settings = ModelSettings(transformerQuantization: transformerQuantization,
                                     textEncoderQuantization: textEncoderQuantization, dtype: dtype,
                                     sharedFiles: sharedFiles, allVariants: allVariants)
        let files = try catalog.expand(model, settings: settings)
            .sorted { ($0.role.displayOrder, $0.path) < ($1.role.displayOrder, $1.path) }
        let sizes = reconciler.cachedSizes(files)
        if let warning = catalog.selection?.warning { printWarning(warning) }
        if json {
            let document = ShowDocument(
                model: model,
                settings: .init(transformerQuantization: transformerQuantization.rawValue,
                                textEncoderQuantization: textEncoderQuantization.rawValue, dtype: dtype.rawValue,
                                sharedFiles: sharedFiles, allVariants: allVariants),
                wan2gp: catalog.selection?.entry,
                files: files.map { .init(path: $0.path, url: $0.url, role: $0.role.rawValue, size: sizes[$0.path], downloadable: $0.downloadable) })
            print(try renderJSON(document), terminator: "")
            return
        }
        let def = catalog.models[model]!
        print("\(model): \(def.name) (architecture \(def.architecture))")
        print(wrapped("settings: transformer_quantization \(transformerQuantization.rawValue), text_encoder_quantization "
                      + "\(textEncoderQuantization.rawValue), dtype \(dtype.rawValue)"
                      + (sharedFiles ? "" : ", no shared files") + (allVariants ? ", all variants" : ""), hanging: 10, width: outputColumns)
                .joined(separator: "\n"))
        if let selection = catalog.selection { print("wan2gp: \(selection.summary)") }
        for notice in missingVariantNotices(files, settings: settings) {
            print(wrapped("note: \(notice)", hanging: 6, width: outputColumns).joined(separator: "\n"))
        }
        print("")
        print(renderShowTable(files.map { f in
            (f.role.rawValue, sizes[f.path].map(formatBytes) ?? "?", f.path + (f.downloadable ? "" : " (not Wan2GP's own download)"))
        }, width: outputColumns), terminator: "")
        let known = files.compactMap { sizes[$0.path] }
        print("\n" + counted(files.count, "file") + (known.isEmpty ? "; sizes unknown until a plan has asked the Hub." : ", \(formatBytes(known.reduce(0, +))) known"))
    }
}

extension ModelSettings.Quantization: ExpressibleByArgument {}
extension ModelSettings.TextEncoderQuantization: ExpressibleByArgument {}
extension ModelSettings.DType: ExpressibleByArgument {}
