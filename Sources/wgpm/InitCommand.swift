import ArgumentParser
import Catalog
import Foundation
import Planner
import Reconciler

struct InitCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "init",
        abstract: "Write a starter manifest; with --from-ckpts, list the models already complete on disk and adopt them.")

    @OptionGroup var configOptions: ConfigOptions

    @Option(name: [.short, .customLong("manifest")], help: ArgumentHelp("The manifest to write.", valueName: "file"),
            completion: .file(extensions: ["yaml", "yml"]))
    var manifest = "wgpm.yaml"

    @Flag(help: "Find the catalog models whose files are all on disk already (for the settings given).")
    var fromCkpts = false

    @Flag(help: "Overwrite an existing manifest.")
    var force = false

    @Option(help: "The transformer's quantization; a model without that variant gets the one Wan2GP takes.") var transformerQuantization: ModelSettings.Quantization = .int8
    @Option(help: "The text encoder's quantization.") var textEncoderQuantization: ModelSettings.TextEncoderQuantization = .int8
    @Option(help: "The weights' data type.") var dtype: ModelSettings.DType = .bf16

    func run() throws {
        var adopted: [String] = []
        if fromCkpts {
            let reconciler = try configOptions.reconciler()
            let catalog = try reconciler.loadCatalog()
            let settings = ModelSettings(transformerQuantization: transformerQuantization,
                                         textEncoderQuantization: textEncoderQuantization, dtype: dtype)
            let fs = reconciler.context.fileSystem
            var complete: [(String, Int)] = []
            var partial: [(String, Int, Int)] = []
            for id in catalog.ids where catalog.models[id]!.visible {
                let files = try catalog.expand(id, settings: settings)
                let sizes = reconciler.cachedSizes(files)
                // Present means a file (or a link to one) of the published size when that is known.
                let present = files.filter { f in
                    guard let st = fs.stat(reconciler.mapper.absolute(f.path)), st.kind == .file else { return false }
                    return sizes[f.path].map { $0 == st.size } ?? true
                }.count
                // Shared files alone (text encoders, VAEs, the core set) do not make a model present.
                let own = files.filter { $0.role == .transformer || $0.role == .module }
                let ownPresent = own.filter { f in fs.stat(reconciler.mapper.absolute(f.path))?.kind == .file }.count
                if present == files.count { complete.append((id, files.count)) }
                else if ownPresent > 0 { partial.append((id, present, files.count)) }
            }
            for (id, n) in complete { print("  complete  \(id)  (\(n) files)") }
            for (id, have, n) in partial { print("  partial   \(id)  (\(have) of \(n) files)") }
            print("\(complete.count) model\(complete.count == 1 ? "" : "s") complete on disk for \(transformerQuantization.rawValue) / \(textEncoderQuantization.rawValue) / \(dtype.rawValue); \(partial.count) partly present.")
            adopted = complete.map(\.0)
        }
        if FileManager.default.fileExists(atPath: manifest) && !force {
            if fromCkpts { print("\(manifest) exists; not overwritten (use --force to replace it with the models above).") ; return }
            throw CommandError("\(manifest) exists; not overwritten. Use --force to replace it.")
        }
        try writeAtomically(starter(models: adopted), to: manifest)
        print("Wrote \(manifest)\(adopted.isEmpty ? "" : " with \(adopted.count) model\(adopted.count == 1 ? "" : "s")"). Next: 'wgpm plan -m \(manifest)'.")
    }

    func starter(models: [String]) -> String {
        // Comments start in one column, whatever the values' lengths.
        func line(_ text: String, _ comment: String) -> String {
            text.padding(toLength: max(38, text.count + 1), withPad: " ", startingAt: 0) + "# " + comment + "\n"
        }
        let list = models.isEmpty ? line("  - t2v", "Wan 2.1 T2V 14B; 'wgpm models' lists all")
            : models.map { "  - \($0)\n" }.joined()
        return "# wgpm manifest: the Wan2GP models this machine should have. Commit it; run 'wgpm plan' to\n"
            + "# see what it costs and 'wgpm apply' to make it so. Machine paths belong in config.yaml.\n"
            + "version: 1\n"
            + line("settings:", "Wan2GP's own settings (defaults shown)")
            + line("  transformer_quantization: \(transformerQuantization.rawValue)", "int8 | fp8 | bf16 (16-bit)")
            + line("  text_encoder_quantization: \(textEncoderQuantization.rawValue)", "int8 | bf16")
            + line("  dtype: \(dtype.rawValue)", "bf16 | fp16 | auto (Wan2GP's choice)")
            + line("  shared_files: true", "tokenizers, VAEs, the core set")
            + "models:\n" + list
            + line("  # - id: i2v_2_2", "per-model overrides of any setting")
            + "  #   transformer_quantization: bf16\n"
            + "  # - id: vace_14B\n"
            + line("  #   variants: all", "every variant, not Wan2GP's pick")
            + line("# files:", "extra files no definition names")
            + "#   - url: https://huggingface.co/ORG/REPO/resolve/main/file.safetensors\n"
            + "#     path: loras/wan/file.safetensors\n"
            + "#     sha256: <64 hex, optional>\n"
    }
}
