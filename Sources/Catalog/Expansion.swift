import Foundation
import func Planner.confinementProblem

/// Wan2GP's settings that decide which variant of a file is picked (wan2gp.md §3.1).
public struct ModelSettings: Hashable, Sendable, Codable {
    public enum Quantization: String, Sendable, Codable, CaseIterable { case int8, fp8, bf16 }
    public enum TextEncoderQuantization: String, Sendable, Codable, CaseIterable { case int8, bf16 }
    public enum DType: String, Sendable, Codable, CaseIterable { case bf16, fp16 }

    public var transformerQuantization: Quantization
    public var textEncoderQuantization: TextEncoderQuantization
    public var dtype: DType
    /// Include the files Wan2GP's code adds (tokenizers, VAEs, the core shared set).
    public var sharedFiles: Bool
    /// Every variant of every single-pick slot instead of Wan2GP's one pick.
    public var allVariants: Bool

    public init(transformerQuantization: Quantization = .int8, textEncoderQuantization: TextEncoderQuantization = .int8,
                dtype: DType = .bf16, sharedFiles: Bool = true, allVariants: Bool = false) {
        self.transformerQuantization = transformerQuantization
        self.textEncoderQuantization = textEncoderQuantization
        self.dtype = dtype
        self.sharedFiles = sharedFiles
        self.allVariants = allVariants
    }
}

/// Why a file is needed; for display and for tests.
public enum FileRole: String, Sendable, Codable, Hashable {
    case transformer, module, textEncoder = "text_encoder", preload, vae, lora, handler, core
}

/// One file a model needs, at its place relative to the Wan2GP directory.
public struct RequiredFile: Hashable, Sendable {
    /// `ckpts/<…>` or `loras/<…>`.
    public var path: String
    /// The URL as the definition writes it (always huggingface.co in the defaults).
    public var url: String
    public var role: FileRole
    /// False when the definition says Wan2GP loads a local file instead (`source:`).
    public var downloadable: Bool
}

/// Expands models into files exactly as Wan2GP does at commit `SupportFiles.wan2gp_commit`.
extension Catalog {
    /// The files one model needs with the given settings, deduplicated by path (first wins).
    /// Every path has passed `confinementProblem`: a definition is input wgpm does not trust.
    public func expand(_ id: String, settings: ModelSettings) throws -> [RequiredFile] {
        guard let def = models[id] else { throw CatalogError.unknownModel(id, suggestion: suggestion(for: id)) }
        var out = Collector(definition: def)
        let model = def.model
        let arch = def.architecture
        let dtype = forcedDType(arch) ?? settings.dtype
        let q = settings.transformerQuantization.rawValue

        // Main transformer, second transformer, modules.
        var mainPick: String?
        for (key, sourceKey) in [("URLs", "source"), ("URLs2", "source2")] where model[key] != nil {
            let list = try urlList(id, key, optionalReference: true)
            let picks = settings.allVariants ? list : pick(list, quantization: q, dtype: dtype, rule: support.variantRule).map { [$0] } ?? []
            if key == "URLs" { mainPick = pick(list, quantization: q, dtype: dtype, rule: support.variantRule) }
            let downloadable = model[sourceKey] == nil
            for url in picks where url.hasPrefix("http") {
                try out.add(ckpt(url), url, .transformer, key: key, downloadable: downloadable)
            }
        }
        if model["modules"] != nil {
            var moduleDType = dtype
            if let main = mainPick, main.contains("quanto") {
                if main.contains("fp16") || main.contains("FP16") { moduleDType = .fp16 }
                else if main.contains("bf16") || main.contains("BF16") { moduleDType = .bf16 }
            }
            let downloadable = model["module_source"] == nil
            for list in try moduleLists(id) {
                let picks = settings.allVariants ? list : pick(list, quantization: q, dtype: moduleDType, rule: support.variantRule).map { [$0] } ?? []
                for url in picks where url.hasPrefix("http") {
                    try out.add(ckpt(url), url, .module, key: "modules", downloadable: downloadable)
                }
            }
        }
        // Take-all lists.
        for url in try urlList(id, "preload_URLs", optionalReference: false) where url.hasPrefix("http") {
            try out.add(preloadPath(url, arch: arch, model: id), url, .preload, key: "preload_URLs")
        }
        if let vae = model["VAE_URLs"] {
            let urls = vae.string.map { [$0] } ?? vae.array?.compactMap(\.string) ?? []
            for url in urls where url.hasPrefix("http") { try out.add(preloadPath(url, arch: arch, model: id), url, .vae, key: "VAE_URLs") }
        }
        let loraDir = support.loraDirectory(of: arch, model: id) ?? "loras"
        for url in try urlList(id, "loras", optionalReference: false) where url.hasPrefix("http") {
            let parts = url.split(separator: "|", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
            let sub = parts.count > 1 ? parts[1] + "/" : ""
            try out.add(path: "\(loraDir)/\(sub)\(urlBasename(url))", url: parts[0], role: .lora, key: "loras", downloadable: true)
        }
        // Text encoder: its own quantization setting; folder from this model's own definition.
        let teList = try urlList(id, "text_encoder_URLs", optionalReference: false).filter { !$0.isEmpty }
        // An empty folder is no folder, as in Wan2GP's os.path.join("ckpts", "", name).
        let teFolder = model["text_encoder_folder"]?.string.flatMap { $0.isEmpty ? nil : $0 }
        let tePicks = settings.allVariants ? teList
            : pick(teList, quantization: settings.textEncoderQuantization.rawValue, dtype: dtype, rule: support.variantRule).map { [$0] } ?? []
        // The folder is checked on its own first, so the message blames the key that is wrong.
        let teKey = teFolder.map { confinementProblem("ckpts/\($0)/x") != nil } == true ? "text_encoder_folder" : "text_encoder_URLs"
        for url in tePicks where url.hasPrefix("http") {
            let name = urlBasename(url)
            try out.add(path: "ckpts/" + (teFolder.map { "\($0)/" } ?? "") + name, url: mainURL(url), role: .textEncoder,
                        key: teKey, downloadable: true)
        }

        if settings.sharedFiles, let traced = support.traced {
            let key = "wgpm's knowledge of Wan2GP \(traced.wangp_version ?? support.wan2gp_commit)"
            // Core before handler files: Wan2GP fetches the core set first, so a file both name
            // (det_align/detface.pt) comes from the core set's repo and the handler's is skipped.
            for entry in traced.core where entry.applies(to: settings) {
                try out.add(path: entry.path, url: entry.url, role: .core, key: key, downloadable: true)
            }
            for entry in traced.support(model: id, architecture: arch) where entry.applies(to: settings) {
                try out.add(path: entry.path, url: entry.url, role: .handler, key: key, downloadable: true)
            }
        } else if settings.sharedFiles {
            for group in support.always {
                for file in group.files ?? [] {
                    try out.add(path: relative(group, file), url: hubURL(group, file), role: .core, key: supportTableKey, downloadable: true)
                }
            }
            for file in try handlerFiles(def, textEncoderPresent: !teList.isEmpty) {
                try out.add(path: file.path, url: file.url, role: .handler, key: file.key, downloadable: true)
            }
        }
        return out.files
    }

    /// Files of a whole selection of models, deduplicated by path in the order given.
    public func expand(_ selection: [(id: String, settings: ModelSettings)]) throws -> [(file: RequiredFile, models: [String])] {
        var order: [String] = []
        var byPath: [String: (RequiredFile, [String])] = [:]
        for (id, settings) in selection {
            for file in try expand(id, settings: settings) {
                if byPath[file.path] == nil { order.append(file.path); byPath[file.path] = (file, []) }
                if !byPath[file.path]!.1.contains(id) { byPath[file.path]!.1.append(id) }
            }
        }
        return order.map { (byPath[$0]!.0, byPath[$0]!.1.sorted()) }
    }

    // MARK: - Pieces

    /// The dtype forced by the architecture's own effective definition (the LTX-2 family etc.).
    func forcedDType(_ architecture: String) -> ModelSettings.DType? {
        let value = models[architecture]?.model["dtype"]?.string
            ?? support.handlerDefaults(architecture: architecture, raw: [:])["dtype"]?.string
        return value.flatMap { ModelSettings.DType(rawValue: $0) }
    }

    /// A list-valued key, following string references to other models' same key.
    /// `optionalReference`: an unknown id yields no file instead of an error (URLs, URLs2).
    func urlList(_ id: String, _ key: String, optionalReference: Bool) throws -> [String] {
        var current = id
        var chain = [id]
        for _ in 0..<10 {
            guard let value = models[current]?.model[key] else { return [] }
            switch value {
            case .array(let items): return items.compactMap(\.string)
            case .string(let ref):
                guard models[ref] != nil else {
                    if optionalReference { return [] }
                    throw CatalogError.unknownReference(model: id, key: key, reference: ref)
                }
                current = ref
                chain.append(ref)
            default: return []
            }
        }
        throw CatalogError.circularReference(model: id, key: key, chain: chain)
    }

    /// One candidate list per module slot (two for an object entry).
    func moduleLists(_ id: String) throws -> [[String]] {
        // `modules` itself may name another model whose whole list is used.
        var current = id
        var chain = [id]
        var entries: [JSONValue] = []
        resolveList: for _ in 0..<11 {
            switch models[current]?.model["modules"] {
            case .array(let a)?: entries = a; break resolveList
            case .string(let ref)?:
                guard models[ref] != nil else { throw CatalogError.unknownReference(model: id, key: "modules", reference: ref) }
                current = ref; chain.append(ref)
                if chain.count > 10 { throw CatalogError.circularReference(model: id, key: "modules", chain: chain) }
            default: return []
            }
        }
        var lists: [[String]] = []
        for entry in entries { lists += try moduleEntry(entry, owner: id, chain: [id]) }
        return lists
    }

    private func moduleEntry(_ entry: JSONValue, owner: String, chain: [String]) throws -> [[String]] {
        switch entry {
        case .array(let urls): return [urls.compactMap(\.string)]
        case .object(let o):
            return [o["URLs"], o["URLs2"]].compactMap { $0?.array?.compactMap(\.string) }
        case .string(let ref):
            guard chain.count <= 10 else { throw CatalogError.circularReference(model: owner, key: "modules", chain: chain + [ref]) }
            guard let target = models[ref] else { throw CatalogError.unknownReference(model: owner, key: "modules", reference: ref) }
            guard case .array(let inner)? = target.model["modules"], inner.count == 1 else {
                throw CatalogError.badModule(model: owner, message: "module '\(ref)' must have a 'modules' list with exactly one entry")
            }
            return try moduleEntry(inner[0], owner: owner, chain: chain + [ref])
        default:
            throw CatalogError.badModule(model: owner, message: "an entry is neither a URL list, a module id nor an object")
        }
    }

    /// `ckpts/<alt>/<name>` for `url|alt`, else `ckpts/<name>`. The alt folder is taken as
    /// written (not normalised) so that the confinement check sees what the definition says.
    func ckpt(_ url: String) -> String {
        let parts = url.split(separator: "|", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
        if parts.count > 1 { return "ckpts/\(parts[1])/\(urlBasename(url))" }
        return "ckpts/" + urlBasename(url)
    }

    func preloadPath(_ url: String, arch: String, model id: String) -> String {
        let parts = url.split(separator: "|", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
        if parts.count > 1, parts[1] == "%lora_dir" {
            return (support.loraDirectory(of: arch, model: id) ?? "loras") + "/" + urlBasename(url)
        }
        return ckpt(url)
    }

    /// Support-file paths with the definition key that shaped each one (for error messages):
    /// `files_from_key` names a key, and placeholders are filled from keys of the definition.
    func handlerFiles(_ def: ModelDefinition, textEncoderPresent: Bool) throws -> [(path: String, url: String, key: String)] {
        guard let family = support.family(of: def.architecture) else { return [] }
        let arch = def.architecture
        let model = def.model
        var placeholders = Placeholders(raw: model, architecture: arch)
        var result: [(String, String, String)] = []
        for group in family.groups {
            if let only = group.only, !only.contains(arch) { continue }
            if let except = group.except, except.contains(arch) { continue }
            if let test = group.if_key, !matches(test, model) { continue }
            if let test = group.unless_key, matches(test, model) { continue }
            if let kiwi = group.kiwi, !kiwi.contains(placeholders.values["kiwi"] ?? "") { continue }
            if group.if_text_encoder == true, !textEncoderPresent { continue }
            var files = group.files ?? []
            if let key = group.files_from_key {
                guard let name = model[key]?.string, !name.isEmpty else { continue }
                files = [name]
            }
            let connectorVariants = files.contains { $0.contains("{ltx25_connector}") }
                ? ltx25ConnectorVariants(model["URLs"]) : [""]
            for variant in connectorVariants {
                placeholders.values["ltx25_connector"] = variant
                let filled = Group(repo: group.repo, folder: placeholders.fill(group.folder), files: nil)
                for file in files {
                    let name = placeholders.fill(file)
                    var keys = Placeholders.keys(in: group.folder + file)
                    if let key = group.files_from_key { keys.append(key) }
                    let key = keys.isEmpty ? supportTableKey : keys.joined(separator: ", ")
                    result.append((relative(filled, name), hubURL(filled, name), key))
                }
            }
        }
        return result
    }

    private func matches(_ test: SupportFiles.Group.KeyTest, _ model: [String: JSONValue]) -> Bool {
        guard let value = model[test.key] else { return false }
        if let expected = test.equals { return value == expected }
        return true
    }

    private typealias Group = SupportFiles.Group

    private func relative(_ group: Group, _ file: String) -> String {
        "ckpts/" + (group.folder.isEmpty ? file : "\(group.folder)/\(file)")
    }

    private func hubURL(_ group: Group, _ file: String) -> String {
        "https://huggingface.co/\(group.repo)/resolve/main/" + (group.folder.isEmpty ? file : "\(group.folder)/\(file)")
    }
}

/// Wan2GP's single-pick rule (wan2gp.md §3.2), as `rule`'s versions of `get_model_filename` apply it.
public func pick(_ list: [String], quantization q: String, dtype: ModelSettings.DType, rule: VariantRule = .r8681e9f7) -> String? {
    guard let first = list.first else { return nil }
    if list.count == 1 { return first }
    var candidates: [String] = []
    switch rule {
    case .r8681e9f7:
        // Since ef3dd17e (2026-01): int8 falls back to fp8 and back; bf16 takes the first file.
        let tokens: [String]
        switch q {
        case "int8": tokens = ["int8", "fp8"]
        case "fp8": tokens = ["fp8", "int8"]
        default: return first
        }
        for token in tokens {
            candidates += list.filter { urlBasenameKeepingAlt($0).lowercased().contains(token) }
        }
    case .r697f8fe8:
        // Its int8 asks mmgp for the int8 and the fp8 tokens and keeps the files naming either,
        // in list order; any other quantization asks for no token, and no match is the first file.
        guard q == "int8" else { return first }
        candidates = list.filter { let n = urlBasenameKeepingAlt($0).lowercased(); return n.contains("int8") || n.contains("fp8") }
    case .r3749d23d, .r221f5eb9:
        // Before: only the asked quantization (no fallback to the other one), and bf16 takes
        // the files that are not quanto ones; 221f5eb9 compares lowercased names.
        let name: (String) -> String = rule == .r221f5eb9 ? { urlBasenameKeepingAlt($0).lowercased() } : { urlBasenameKeepingAlt($0) }
        if q == "int8" || q == "fp8" {
            candidates = list.filter { rule == .r221f5eb9 ? name($0).contains(q) : (name($0).contains(q) || name($0).contains(q.uppercased())) }
        } else {
            candidates = list.filter { !urlBasenameKeepingAlt($0).contains("quanto") }
        }
    }
    if candidates.isEmpty { return first }
    let spellings = dtype == .bf16 ? ["bf16", "BF16"] : ["fp16", "FP16"]
    let preferred = candidates.filter { c in spellings.contains { urlBasenameKeepingAlt(c).contains($0) } }
    return (preferred.isEmpty ? candidates : preferred).first
}

extension FileRole {
    /// The order `show` lists roles in: what a model is first, what every model shares last.
    public var displayOrder: Int {
        switch self {
        case .transformer: 0
        case .module: 1
        case .textEncoder: 2
        case .vae: 3
        case .preload: 4
        case .lora: 5
        case .handler: 6
        case .core: 7
        }
    }
}

/// Where `settings` asked for a variant the model does not have, what Wan2GP takes instead:
/// `--transformer-quantization fp8` on a model without an fp8 file gets its int8 file, and a
/// person reading `show` should not take that for the fp8 one.
public func missingVariantNotices(_ files: [RequiredFile], settings: ModelSettings) -> [String] {
    guard !settings.allVariants else { return [] }
    var notices: [String] = []
    for file in files where file.role == .transformer {
        let name = urlBasenameKeepingAlt(file.url).lowercased()
        let q = settings.transformerQuantization.rawValue
        let quantized = name.contains("int8") || name.contains("fp8")
        if (q == "bf16" && quantized) || (q != "bf16" && !name.contains(q)) {
            notices.append("no \(q) variant of this model's transformer; Wan2GP takes \(file.path)")
        }
        let other = settings.dtype == .bf16 ? "fp16" : "bf16"
        if name.contains(other) && !name.contains(settings.dtype.rawValue) {
            notices.append("no \(settings.dtype.rawValue) variant of \(file.path); Wan2GP takes it as it is")
        }
    }
    return notices
}

/// The basename used for variant matching includes any `|alt` suffix (wan2gp.md §6, item 12).
func urlBasenameKeepingAlt(_ url: String) -> String {
    url.split(separator: "/").last.map(String.init) ?? url
}

func mainURL(_ url: String) -> String {
    url.split(separator: "|", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? url
}

/// Names wgpm's own table as the origin of a path no definition key shaped.
let supportTableKey = "wgpm's support-files.json"

/// Collects files in order, keeping the first file for each path. No path leaves it unchecked:
/// a path that fails `confinementProblem` throws, naming the model, its files and the key.
struct Collector {
    let definition: ModelDefinition
    var files: [RequiredFile] = []
    var seen: Set<String> = []

    init(definition: ModelDefinition) { self.definition = definition }

    mutating func add(path: String, url: String, role: FileRole, key: String, downloadable: Bool) throws {
        if let problem = confinementProblem(path) {
            throw CatalogError.unconfinedPath(model: definition.id, files: definition.files, key: key, problem: problem)
        }
        guard seen.insert(path).inserted else { return }
        files.append(RequiredFile(path: path, url: url, role: role, downloadable: downloadable))
    }

    mutating func add(_ path: String, _ url: String, _ role: FileRole, key: String, downloadable: Bool = true) throws {
        try add(path: path, url: mainURL(url), role: role, key: key, downloadable: downloadable)
    }
}
