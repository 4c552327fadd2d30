import Foundation
import func Planner.confinementProblem

/// What one Wan2GP checkout's own code downloads for each model under each setting, as
/// `tools/wan2gp_trace/trace.py` records it. Input from another program: checked before use.
public struct WanTrace: Codable, Sendable {
    public struct File: Codable, Sendable, Hashable {
        public var url: String
        /// Indices into `settings`; absent: downloaded under every setting.
        public var settings: [Int]?

        public init(url: String, settings: [Int]?) {
            self.url = url
            self.settings = settings
        }
    }
    public struct Model: Codable, Sendable {
        public var architecture: String
        /// Where this Wan2GP looks for the model's LoRAs, relative to the app root.
        public var lora_dir: String?
        /// By path relative to the app root (`ckpts/…`, `loras/…`).
        public var files: [String: File]

        public init(architecture: String, lora_dir: String?, files: [String: File]) {
            self.architecture = architecture
            self.lora_dir = lora_dir
            self.files = files
        }
    }
    public var format_version: Int
    public var wan2gp_commit: String?
    public var wangp_version: String?
    public var fingerprint: String
    public var mmgp: String?
    public var settings: [String]
    public var models: [String: Model]
    public var errors: [String: String]?

    public init(format_version: Int, wan2gp_commit: String?, wangp_version: String?, fingerprint: String, mmgp: String?,
                settings: [String], models: [String: Model], errors: [String: String]?) {
        self.format_version = format_version
        self.wan2gp_commit = wan2gp_commit
        self.wangp_version = wangp_version
        self.fingerprint = fingerprint
        self.mmgp = mmgp
        self.settings = settings
        self.models = models
        self.errors = errors
    }

    public static func decode(_ data: Data, file: String) throws -> WanTrace {
        let trace: WanTrace
        do { trace = try JSONDecoder().decode(WanTrace.self, from: data) } catch {
            throw CatalogError.badKnowledge(file: file, message: "not a wgpm trace: \(jsonErrorMessage(error))")
        }
        guard trace.format_version == 1 else {
            throw CatalogError.badKnowledge(file: file, message: "trace format_version \(trace.format_version) is not 1; update wgpm or the tracer")
        }
        guard trace.settings == ModelSettings.traceOrder else {
            throw CatalogError.badKnowledge(file: file, message: "the trace's settings are not wgpm's 12 settings in their order")
        }
        return trace
    }
}

extension ModelSettings {
    /// The 12 settings a trace covers, `transformer-textencoder-dtype`, transformer outermost.
    public static let traceOrder: [String] = Quantization.allCases.flatMap { q in
        TextEncoderQuantization.allCases.flatMap { t in DType.allCases.map { d in "\(q.rawValue)-\(t.rawValue)-\(d.rawValue)" } }
    }

    /// This setting's index in `traceOrder`.
    public var traceIndex: Int {
        let q = Quantization.allCases.firstIndex(of: transformerQuantization)!
        let t = TextEncoderQuantization.allCases.firstIndex(of: textEncoderQuantization)!
        let d = DType.allCases.firstIndex(of: dtype)!
        return q * 4 + t * 2 + d
    }

    /// The setting at `index` of `traceOrder`.
    public init(traceIndex index: Int) {
        self.init(transformerQuantization: Quantization.allCases[index / 4],
                  textEncoderQuantization: TextEncoderQuantization.allCases[(index / 2) % 2],
                  dtype: DType.allCases[index % 2])
    }
}

/// The files a Wan2GP version adds to what its definitions list, derived from a trace
/// (`Knowledge.derive`): explicit lists instead of the hand-written rules of `support-files.json`.
public struct TracedKnowledge: Codable, Sendable {
    public struct Entry: Codable, Sendable, Hashable {
        /// Relative to the app root.
        public var path: String
        public var url: String
        /// Indices into `ModelSettings.traceOrder`; absent: every setting.
        public var settings: [Int]?

        func applies(to settings: ModelSettings) -> Bool {
            settings.allVariants || self.settings.map { $0.contains(settings.traceIndex) } ?? true
        }
    }
    public struct Architecture: Codable, Sendable {
        public var lora_dir: String?
        /// The dtype the architecture's handler forces (as LTX-2's does), when it does.
        public var dtype: ModelSettings.DType?
        public var support: [Entry]
    }
    public struct ModelOverride: Codable, Sendable {
        public var lora_dir: String?
        /// Replaces the architecture's list for this model.
        public var support: [Entry]?
    }
    public var format_version: Int
    public var wan2gp_commit: String?
    public var wangp_version: String?
    public var commit_date: String?
    public var fingerprint: String
    /// Names a variant rule `pick` knows; "8681e9f7" is today's.
    public var variant_rule: String
    public var core: [Entry]
    public var architectures: [String: Architecture]
    public var models: [String: ModelOverride]

    public static let formatVersion = 1

    public static func decode(_ data: Data, file: String) throws -> TracedKnowledge {
        let k: TracedKnowledge
        do { k = try JSONDecoder().decode(TracedKnowledge.self, from: data) } catch {
            throw CatalogError.badKnowledge(file: file, message: jsonErrorMessage(error))
        }
        guard k.format_version == formatVersion else {
            throw CatalogError.badKnowledge(file: file, message: "format_version \(k.format_version) is not \(formatVersion); run `wgpm trace` again")
        }
        guard VariantRule(rawValue: k.variant_rule) != nil else {
            throw CatalogError.badKnowledge(file: file, message: "unknown variant rule '\(k.variant_rule)'; update wgpm")
        }
        let entries = k.core + k.architectures.values.flatMap(\.support) + k.models.values.flatMap { $0.support ?? [] }
        for e in entries {
            if let problem = knowledgePathProblem(e.path) { throw CatalogError.badKnowledge(file: file, message: problem) }
            if !e.url.hasPrefix("https://") { throw CatalogError.badKnowledge(file: file, message: "\(e.path): URL '\(e.url.prefix(80))' is not https") }
            if let s = e.settings, s.contains(where: { $0 < 0 || $0 >= 12 }) {
                throw CatalogError.badKnowledge(file: file, message: "\(e.path): a settings index is outside 0…11")
            }
        }
        for dir in k.loraDirectories {
            if let problem = knowledgePathProblem(dir + "/x") { throw CatalogError.badKnowledge(file: file, message: "LoRA folder: \(problem)") }
        }
        return k
    }

    func support(model id: String, architecture: String) -> [Entry] {
        models[id]?.support ?? architectures[architecture]?.support ?? []
    }

    /// Every LoRA folder this knowledge names, per architecture and per model.
    var loraDirectories: [String] {
        architectures.values.compactMap(\.lora_dir) + models.values.compactMap(\.lora_dir)
    }

    func loraDirectory(model id: String?, architecture: String) -> String? {
        id.flatMap { models[$0]?.lora_dir } ?? architectures[architecture]?.lora_dir
    }
}

/// The variant rules Wan2GP's `get_model_filename` has used, each named by the commit that
/// introduced it (the newest keeps the name of the commit wgpm's rules table was checked at).
public enum VariantRule: String, Sendable, Codable, CaseIterable {
    /// 2025-06 to 2025-12-30: the asked quantization as written ("int8" or "INT8"), bf16 = not quanto.
    case r3749d23d = "3749d23d"
    /// 2025-12-30 to 2026-01-07: the same with lowercased names (mmgp's quantization tokens).
    case r221f5eb9 = "221f5eb9"
    /// 2026-01-07 (697f8fe8, LTX-2) to 2026-01-11: int8 takes a file naming int8 or fp8, in list
    /// order; fp8 and bf16 take the first file.
    case r697f8fe8 = "697f8fe8"
    /// Since ef3dd17e (2026-01-11): int8 and fp8 fall back to each other; bf16 takes the first.
    case r8681e9f7 = "8681e9f7"
}

/// Where a knowledge path may point: where any definition path may (`confinementProblem`):
/// below ckpts/, loras/, or one of the root-level LoRA folders (`loras_i2v/` …) Wan2GP used
/// before 2025-11-28, by exact name; anything else is refused rather than followed.
func knowledgePathProblem(_ path: String) -> String? {
    confinementProblem(path)
}

/// Every commit of Wan2GP's history that wgpm knows, and the knowledge each one takes.
public struct KnowledgeIndex: Codable, Sendable {
    public struct Commit: Codable, Sendable {
        public var commit: String
        public var date: String
        public var wangp_version: String?
        public var fingerprint: String
        /// `CheckoutVersion.definitions` at this commit.
        public var definitions: String?
        /// The bundled knowledge file (`knowledge/<name>.json`), or "8681e9f7" for the rules table.
        public var knowledge: String?
    }
    public var format_version: Int
    public var commits: [Commit]

    public static func bundled() throws -> KnowledgeIndex {
        let data = try bundledResource("index")
        do { return try JSONDecoder().decode(KnowledgeIndex.self, from: data) } catch {
            throw CatalogError.internalData("knowledge/index.json in the wgpm build is broken: \(jsonErrorMessage(error))")
        }
    }
}

func bundledResource(_ name: String) throws -> Data {
    guard let url = Bundle.module.url(forResource: name, withExtension: "json", subdirectory: "knowledge")
            ?? Bundle.module.resourceURL?.appendingPathComponent("knowledge/\(name).json"),
          let data = try? Data(contentsOf: url) else {
        throw CatalogError.internalData("knowledge/\(name).json is missing from the wgpm build")
    }
    return data
}

/// Which Wan2GP wgpm read and which knowledge it computes that Wan2GP's files with.
public struct KnowledgeSelection: Sendable, Codable {
    public enum Kind: String, Sendable, Codable {
        /// The checkout's fingerprint is one wgpm knows.
        case known
        /// `wgpm trace` asked this checkout's own code; its answer is in the state directory.
        case traced
        /// A known commit whose download code was edited locally.
        case edited
        /// A version wgpm does not know; the nearest known one stands in.
        case fallback
        /// A folder of definitions without Wan2GP's code, identical to a known commit's.
        case definitions
    }
    public var version: CheckoutVersion
    public var kind: Kind
    /// The knowledge used: a commit prefix, or `traced:<fingerprint prefix>`.
    public var knowledge: String
    /// The WanGP_version of the knowledge used.
    public var knowledgeVersion: String?
    /// For `edited` and `fallback`: what is wrong and the command that fixes it.
    public var warning: String?

    enum CodingKeys: String, CodingKey {
        case version, kind, knowledge, knowledgeVersion = "knowledge_wangp_version", warning
    }

    /// One line for humans: `Wan2GP 12.3456 (ed94632a): known`.
    public var summary: String {
        let v = version.wangpVersion.map { "Wan2GP \($0)" } ?? "Wan2GP (no WanGP_version in wgp.py)"
        let c = version.commit.map { " at \($0.prefix(8))" } ?? ""
        switch kind {
        case .known: return "\(v)\(c): a version wgpm knows (knowledge \(knowledge))"
        case .traced: return "\(v)\(c): traced by `wgpm trace` (fingerprint \(version.fingerprint.prefix(12)))"
        case .edited: return "\(v)\(c): edited locally; wgpm uses what it knows of \(knowledge)"
        case .fallback: return "\(v)\(c): unknown to wgpm; it uses the nearest known version, \(knowledgeVersion ?? "?") (\(knowledge))"
        case .definitions: return "definitions of Wan2GP \(knowledgeVersion ?? "?") (\(knowledge)), without its code"
        }
    }
}

extension Catalog {
    /// Reads a Wan2GP directory with the knowledge for its version: traced knowledge in
    /// `tracedDirectory` (keyed by fingerprint) first, then the bundled knowledge for a known
    /// fingerprint, then — with a warning naming `wgpm trace` — the same commit's or the nearest
    /// version's.
    public static func load(wan2gpDirectory dir: String, tracedDirectory: String?) throws -> Catalog {
        let version = CheckoutVersion.read(dir)
        let (support, selection) = try selectKnowledge(version: version, tracedDirectory: tracedDirectory)
        var catalog = try load(wan2gpDirectory: dir, support: support)
        catalog.selection = selection
        return catalog
    }

    static func selectKnowledge(version: CheckoutVersion, tracedDirectory: String?) throws -> (SupportFiles, KnowledgeSelection) {
        if let tracedDirectory {
            let path = (tracedDirectory as NSString).appendingPathComponent("\(version.fingerprint).json")
            if let data = readRegularFile(path, limit: 256 << 20) {
                let traced = try TracedKnowledge.decode(data, file: path)
                guard traced.fingerprint == version.fingerprint else {
                    throw CatalogError.badKnowledge(file: path, message: "it is for fingerprint \(traced.fingerprint.prefix(12)), not this checkout's; delete it and run `wgpm trace`")
                }
                return (try SupportFiles(traced: traced),
                        KnowledgeSelection(version: version, kind: .traced, knowledge: "traced:\(version.fingerprint.prefix(12))",
                                           knowledgeVersion: traced.wangp_version, warning: nil))
            }
        }
        let index = try KnowledgeIndex.bundled()
        let known = index.commits.filter { $0.knowledge != nil }
        if let hit = known.first(where: { $0.fingerprint == version.fingerprint }) {
            return (try bundledSupport(hit.knowledge!),
                    KnowledgeSelection(version: version, kind: .known, knowledge: hit.knowledge!, knowledgeVersion: hit.wangp_version, warning: nil))
        }
        if version.fingerprintFiles == 0 {
            // Nothing runs here, so there is no code to trace: the definitions name the commit.
            if let hit = known.last(where: { $0.definitions == version.definitions }) {
                return (try bundledSupport(hit.knowledge!),
                        KnowledgeSelection(version: version, kind: .definitions, knowledge: hit.knowledge!, knowledgeVersion: hit.wangp_version, warning: nil))
            }
            let newest = nearestKnown(nil, in: known)
            let warning = "this folder has Wan2GP definitions but no wgp.py, and they are not those of a version wgpm knows; the files listed are those of \(newest.wangp_version ?? "?") (\(newest.commit.prefix(8))) and may be wrong: point wan2gp_directory at the Wan2GP checkout itself"
            return (try bundledSupport(newest.knowledge!),
                    KnowledgeSelection(version: version, kind: .fallback, knowledge: newest.knowledge!, knowledgeVersion: newest.wangp_version, warning: warning))
        }
        let fix = "run `wgpm trace` to ask this Wan2GP's own code"
        if let commit = version.commit, let hit = known.first(where: { $0.commit == commit }) {
            let warning = "Wan2GP at \(commit.prefix(8)) has locally edited download code (its fingerprint is not that commit's); the files listed are what the unedited commit downloads: \(fix)"
            return (try bundledSupport(hit.knowledge!),
                    KnowledgeSelection(version: version, kind: .edited, knowledge: hit.knowledge!, knowledgeVersion: hit.wangp_version, warning: warning))
        }
        let nearest = nearestKnown(version.wangpVersion, in: known)
        let what = version.wangpVersion.map { "Wan2GP \($0)" } ?? "this Wan2GP (no WanGP_version in its wgp.py)"
        let warning = "\(what)\(version.commit.map { " at \($0.prefix(8))" } ?? "") is a version wgpm does not know; the files listed are those of the nearest known version, \(nearest.wangp_version ?? "?") (\(nearest.commit.prefix(8))), and may be wrong: \(fix)"
        return (try bundledSupport(nearest.knowledge!),
                KnowledgeSelection(version: version, kind: .fallback, knowledge: nearest.knowledge!, knowledgeVersion: nearest.wangp_version, warning: warning))
    }

    static func bundledSupport(_ name: String) throws -> SupportFiles {
        if name == "8681e9f7" { return try SupportFiles.bundled() }
        guard name.utf8.count == 8, name.utf8.allSatisfy({ ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x66) }) else {
            throw CatalogError.internalData("knowledge/index.json names '\(name)', which is not a knowledge file")
        }
        return try SupportFiles(traced: TracedKnowledge.decode(try bundledResource(name), file: "knowledge/\(name).json"))
    }

    /// The known commit whose WanGP_version is closest to `version` (numerically, part by part);
    /// ties and unreadable versions go to the newest known commit.
    static func nearestKnown(_ version: String?, in known: [KnowledgeIndex.Commit]) -> KnowledgeIndex.Commit {
        let newest = known.max { ($0.date, $0.commit) < ($1.date, $1.commit) }!
        guard let target = version.flatMap(versionNumber) else { return newest }
        let scored = known.compactMap { c in c.wangp_version.flatMap(versionNumber).map { (c, abs($0 - target)) } }
        return scored.min { ($0.1, $1.0.date) < ($1.1, $0.0.date) }?.0 ?? newest
    }
}

/// "12.3456" → 12.3456; Wan2GP's versions are decimal numbers (9.72 < 9.91 < 10.54).
func versionNumber(_ s: String) -> Double? {
    let digits = s.prefix { $0.isNumber || $0 == "." }
    let parts = digits.split(separator: ".")
    guard let major = parts.first.flatMap({ Double($0) }) else { return nil }
    return parts.count > 1 ? Double("\(Int(major)).\(parts[1])") : major
}
