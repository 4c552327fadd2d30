import Foundation
import Planner

/// The files Wan2GP's code adds to what definitions list, read from `support-files.json`.
///
/// The table is data so that a new Wan2GP commit is a data change; the only logic here is the
/// small set of conditions and placeholders that the table's `about` field names.
public struct SupportFiles: Sendable, Decodable {
    public struct Group: Sendable, Decodable {
        public struct KeyTest: Sendable, Decodable {
            var key: String
            var equals: JSONValue?
        }
        var repo: String
        var folder: String
        var files: [String]?
        var only: [String]?
        var except: [String]?
        var if_key: KeyTest?
        var unless_key: KeyTest?
        var files_from_key: String?
        var kiwi: [String]?
        var if_text_encoder: Bool?
    }

    public struct Family: Sendable, Decodable {
        public var name: String
        var handler: String
        public var architectures: [String]
        var model_defaults: [String: JSONValue]?
        var model_defaults_only: [String: [String: JSONValue]]?
        var groups: [Group]
    }

    public var wan2gp_commit: String
    var always: [Group]
    public var families: [Family]
    var lora_dirs: [String: String]
    /// Explicit lists derived from a trace, in place of `always`, the groups and `lora_dirs`.
    public var traced: TracedKnowledge?

    /// A table that carries traced knowledge: one family per traced architecture (so every
    /// architecture the tracer saw has a handler), with only the dtype the handler forces.
    public init(traced: TracedKnowledge) throws {
        wan2gp_commit = traced.wan2gp_commit ?? "traced:\(traced.fingerprint.prefix(12))"
        always = []
        lora_dirs = [:]
        families = traced.architectures.keys.sorted().map { arch in
            Family(name: arch, handler: "traced", architectures: [arch],
                   model_defaults: traced.architectures[arch]?.dtype.map { ["dtype": .string($0.rawValue)] },
                   model_defaults_only: nil, groups: [])
        }
        self.traced = traced
    }

    /// The table shipped with wgpm.
    public static func bundled() throws -> SupportFiles {
        guard let url = Bundle.module.url(forResource: "support-files", withExtension: "json") else {
            throw CatalogError.internalData("support-files.json is missing from the wgpm build")
        }
        return try JSONDecoder().decode(SupportFiles.self, from: Data(contentsOf: url))
    }

    func family(of architecture: String) -> Family? {
        families.first { $0.architectures.contains(architecture) }
    }

    /// The variant rule of this Wan2GP version.
    public var variantRule: VariantRule { traced.flatMap { VariantRule(rawValue: $0.variant_rule) } ?? .r8681e9f7 }

    /// The root-level LoRA folders of an older Wan2GP (`loras_i2v` …) this version uses, sorted.
    public var legacyLoraFolders: [String] {
        Set((traced?.loraDirectories ?? []).compactMap { pathSegments($0).first }.filter { legacyLoraRoots.contains($0) }).sorted()
    }

    /// The LoRA folder, relative to the app root, of a model of `architecture`.
    public func loraDirectory(of architecture: String, model id: String? = nil) -> String? {
        if let traced { return traced.loraDirectory(model: id, architecture: architecture) }
        return lora_dirs[architecture].map { "loras/" + $0 }
    }

    /// Handler defaults for a model, computed from its raw JSON `model` object at creation.
    func handlerDefaults(architecture: String, raw: [String: JSONValue]) -> [String: JSONValue] {
        guard let family = family(of: architecture) else { return [:] }
        var defaults = family.model_defaults ?? [:]
        for (k, v) in family.model_defaults_only?[architecture] ?? [:] { defaults[k] = v }
        let placeholders = Placeholders(raw: raw, architecture: architecture)
        return defaults.mapValues { placeholders.fill($0) }
    }
}

/// Values that a handler derives from a model's own definition (wan2gp.md §4.4).
struct Placeholders {
    var values: [String: String] = [:]

    init(raw model: [String: JSONValue], architecture: String) {
        let urls = model["URLs"]?.array?.compactMap(\.string) ?? []
        let urls2 = model["URLs2"]?.array?.compactMap(\.string) ?? []
        let first = urls.first.map(urlBasename)?.lowercased() ?? ""
        values["kiwi"] = first.contains("instruct_only") ? "instruct_only"
            : first.contains("reference_only") ? "reference_only" : "instruct_reference"
        values["ideogram4_te"] = (urls + urls2).contains { $0.contains("_nf4") } ? "nf4" : "fp8"
        if let v = model["heartmula_codec_version"], v.isTruthy {
            let text: String = switch v {
            case .string(let s): s
            case .number(let n): n == n.rounded() ? String(Int(n)) : String(n)
            default: "\(v)"
            }
            values["heartmula_sfx"] = "_" + text
        } else {
            values["heartmula_sfx"] = ""
        }
        values["te_folder"] = model["text_encoder_folder"]?.string ?? ""
    }

    /// The definition key each placeholder is derived from.
    static let sourceKeys = ["te_folder": "text_encoder_folder", "heartmula_sfx": "heartmula_codec_version",
                             "kiwi": "URLs", "ideogram4_te": "URLs", "ltx25_connector": "URLs"]

    /// The definition keys behind the placeholders in a table text, for messages.
    static func keys(in text: String) -> [String] {
        sourceKeys.keys.sorted().filter { text.contains("{\($0)}") }.map { sourceKeys[$0]! }
    }

    func fill(_ text: String) -> String {
        var out = text
        for (k, v) in values { out = out.replacingOccurrences(of: "{\(k)}", with: v) }
        return out
    }

    func fill(_ value: JSONValue) -> JSONValue {
        switch value {
        case .string(let s): return .string(fill(s))
        case .array(let a): return .array(a.map(fill))
        default: return value
        }
    }
}

/// The connector variants of an LTX-2.5 model: one per distinct `URLs` entry kind (§4.4).
func ltx25ConnectorVariants(_ urls: JSONValue?) -> [String] {
    let entries: [String]
    switch urls {
    case .array(let a): entries = a.compactMap(\.string)
    case .string: return ["bf16"]  // a reference counts as a single, unquantized entry
    default: entries = []
    }
    var seen: [String] = []
    for entry in entries {
        let name = urlBasename(entry)
        let v = name.contains("nvfp4") ? "nvfp4_bf16" : name.contains("int8") ? "int8_convrot" : "bf16"
        if !seen.contains(v) { seen.append(v) }
    }
    return seen
}

/// Last path segment of the part of a URL before any `|alt` suffix.
func urlBasename(_ url: String) -> String {
    let main = url.split(separator: "|", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? url
    return main.split(separator: "/").last.map(String.init) ?? main
}
