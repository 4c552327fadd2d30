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
        print("settings: transformer_quantization \(transformerQuantization.rawValue), text_encoder_quantization "
              + "\(textEncoderQuantization.rawValue), dtype \(dtype.rawValue)"
              + (sharedFiles ? "" : ", no shared files") + (allVariants ? ", all variants" : ""))
        if let selection = catalog.selection { print("wan2gp: \(selection.summary)") }
        for notice in missingVariantNotices(files, settings: settings) { print("note: \(notice)") }
        print("")
        let roleWidth = max(4, files.map { $0.role.rawValue.count }.max() ?? 0)
        let sizeText = files.map { sizes[$0.path].map(formatBytes) ?? "?" }
        let sizeWidth = max(4, sizeText.map(\.count).max() ?? 0)
        func cell(_ s: String, _ w: Int) -> String { s.padding(toLength: max(w, s.count), withPad: " ", startingAt: 0) }
        print("  " + cell("ROLE", roleWidth) + "  " + String(repeating: " ", count: sizeWidth - 4) + "SIZE  PATH")
        for (f, size) in zip(files, sizeText) {
            print("  " + cell(f.role.rawValue, roleWidth) + "  " + String(repeating: " ", count: sizeWidth - size.count) + size
                  + "  \(f.path)\(f.downloadable ? "" : " (not Wan2GP's own download)")")
        }
        let known = files.compactMap { sizes[$0.path] }
        print("\n" + counted(files.count, "file") + (known.isEmpty ? "; sizes unknown until a plan has asked the Hub." : ", \(formatBytes(known.reduce(0, +))) known"))
    }
}

extension ModelSettings.Quantization: ExpressibleByArgument {}
extension ModelSettings.TextEncoderQuantization: ExpressibleByArgument {}
extension ModelSettings.DType: ExpressibleByArgument {}
