import Foundation
import func Planner.confinementProblem

/// Errors of the catalog stage: reading Wan2GP's definitions and expanding a model into files.
public enum CatalogError: Error, Equatable, CustomStringConvertible {
    case noDefaultsDirectory(String)
    case malformedDefinition(file: String, message: String)
    case unknownModel(String, suggestion: String?)
    case circularReference(model: String, key: String, chain: [String])
    case unknownReference(model: String, key: String, reference: String)
    case badModule(model: String, message: String)
    /// A definition value makes a path outside ckpts/ or loras/ (`problem` is the rule's reason).
    case unconfinedPath(model: String, files: [String], key: String, problem: String)
    case internalData(String)
    /// Traced or bundled knowledge that cannot be used.
    case badKnowledge(file: String, message: String)

    public var description: String {
        switch self {
        case .noDefaultsDirectory(let dir):
            if dir.isEmpty { return "wan2gp_directory is not set: set it in the config to the Wan2GP checkout (the folder that holds wgp.py and defaults/)." }
            if !FileManager.default.fileExists(atPath: dir) { return "\(dir) does not exist: wan2gp_directory must point at a Wan2GP checkout (the folder that holds wgp.py and defaults/)." }
            return "\(dir) has no defaults/ folder: wan2gp_directory must point at a Wan2GP checkout (the folder that holds wgp.py and defaults/)."
        case .malformedDefinition(let file, let message):
            return "\(file): not a valid model definition: \(message). Fix or remove the file."
        case .unknownModel(let id, let suggestion):
            return "unknown model id '\(id)'" + (suggestion.map { "; did you mean \($0)?" } ?? ".") + " Run 'wgpm models' to list the catalog."
        case .circularReference(let model, let key, let chain):
            return "\(model).\(key): circular reference (\(chain.joined(separator: " -> "))). Make one of these definitions list files instead of naming another model."
        case .unknownReference(let model, let key, let reference):
            return "\(model).\(key) refers to model '\(reference)', which does not exist. Fix the definition or add the missing one."
        case .badModule(let model, let message):
            return "\(model).modules: \(message)"
        case .unconfinedPath(let model, let files, let key, let problem):
            return "\(files.joined(separator: " + ")): '\(key)' of model '\(model)' gives a path wgpm will not write: \(problem). Fix or remove the definition file; nothing was planned."
        case .internalData(let message):
            return message
        case .badKnowledge(let file, let message):
            return "\(file): \(message)"
        }
    }
}

/// One model: its id, the file it came from and its effective definition.
public struct ModelDefinition: Sendable {
    public var id: String
    /// Files the definition was read from, in merge order (defaults first).
    public var files: [String]
    /// The effective `model` object: handler defaults under the JSON.
    public var model: [String: JSONValue]

    public var name: String { model["name"]?.string ?? id }
    public var architecture: String { model["architecture"]?.string ?? "" }
    public var visible: Bool { model["visible"]?.bool ?? true }
    public var description: String { model["description"]?.string ?? "" }
}

/// All Wan2GP model definitions of one installation.
public struct Catalog: Sendable {
    public var models: [String: ModelDefinition]
    public var support: SupportFiles
    /// Finetune files that were skipped, as Wan2GP does, with the reason.
    public var warnings: [String]
    /// Which Wan2GP was read and which knowledge computes its files; nil when loaded with a
    /// table given by the caller (tests).
    public var selection: KnowledgeSelection?

    public var ids: [String] { models.keys.sorted() }

    public init(models: [String: ModelDefinition], support: SupportFiles, warnings: [String] = []) {
        self.models = models
        self.support = support
        self.warnings = warnings
    }

    /// Reads `defaults/*.json` and `finetunes/*.json` of a Wan2GP directory.
    ///
    /// Files are processed sorted by path, so a finetune with a default's id is merged over it
    /// key by key, and handler defaults are computed once, when a model is first created.
    public static func load(wan2gpDirectory dir: String, support: SupportFiles? = nil) throws -> Catalog {
        let support = try support ?? SupportFiles.bundled()
        let fm = FileManager.default
        var isDir: ObjCBool = false
        let defaultsDir = (dir as NSString).appendingPathComponent("defaults")
        guard fm.fileExists(atPath: defaultsDir, isDirectory: &isDir), isDir.boolValue else {
            throw CatalogError.noDefaultsDirectory(dir)
        }
        var paths: [String] = []
        for sub in ["defaults", "finetunes"] {
            let folder = (dir as NSString).appendingPathComponent(sub)
            guard let names = try? fm.contentsOfDirectory(atPath: folder) else { continue }
            paths += names.filter { $0.hasSuffix(".json") }.map { (folder as NSString).appendingPathComponent($0) }
        }
        paths.sort()

        var models: [String: ModelDefinition] = [:]
        var warnings: [String] = []
        for path in paths {
            let isFinetune = path.contains("/finetunes/")
            let object: [String: JSONValue]
            do {
                let data = try Data(contentsOf: URL(fileURLWithPath: path))
                guard let parsed = try JSONDecoder().decode(JSONValue.self, from: data).object else {
                    throw CatalogError.malformedDefinition(file: path, message: "the top level is not a JSON object")
                }
                guard case .object? = parsed["model"] else {
                    throw CatalogError.malformedDefinition(file: path, message: "it has no \"model\" object")
                }
                object = parsed
            } catch {
                let message = (error as? CatalogError)?.description ?? jsonErrorMessage(error)
                if isFinetune {
                    warnings.append("\(path): ignored, as Wan2GP does: \(message)")
                    continue
                }
                if let e = error as? CatalogError { throw e }
                throw CatalogError.malformedDefinition(file: path, message: message)
            }
            let id = ((path as NSString).lastPathComponent as NSString).deletingPathExtension
            let raw = object["model"]?.object ?? [:]
            if var existing = models[id] {
                for (k, v) in raw { existing.model[k] = v }
                existing.files.append(path)
                models[id] = existing
            } else {
                guard let arch = raw["architecture"]?.string else {
                    if isFinetune { warnings.append("\(path): ignored: no model.architecture"); continue }
                    throw CatalogError.malformedDefinition(file: path, message: "model.architecture is missing")
                }
                var effective = support.handlerDefaults(architecture: arch, raw: raw)
                for (k, v) in raw { effective[k] = v }
                models[id] = ModelDefinition(id: id, files: [path], model: effective)
            }
        }
        // An architecture no handler supports makes the model invisible to Wan2GP.
        for (id, def) in models where support.family(of: def.architecture) == nil {
            warnings.append("\(id): architecture '\(def.architecture)' has no handler in wgpm's table (Wan2GP \(support.wan2gp_commit.prefix(8))); its support files are not known")
        }
        return Catalog(models: models, support: support, warnings: warnings.sorted())
    }

    /// The closest known id, for "did you mean" suggestions.
    public func suggestion(for id: String) -> String? {
        closest(to: id, in: ids)
    }
}

func jsonErrorMessage(_ error: Error) -> String {
    if case DecodingError.dataCorrupted(let ctx) = error {
        let underlying = (ctx.underlyingError as NSError?)?.userInfo[NSDebugDescriptionErrorKey] as? String
        return underlying ?? ctx.debugDescription
    }
    return "\(error)"
}

/// The candidate with the smallest edit distance, when it is close enough to be a likely typo.
public func closest(to word: String, in candidates: [String]) -> String? {
    let lower = word.lowercased()
    var best: (String, Int)?
    for c in candidates {
        let d = editDistance(lower, c.lowercased())
        if best == nil || d < best!.1 || (d == best!.1 && c < best!.0) { best = (c, d) }
    }
    guard let (name, distance) = best else { return nil }
    if distance <= max(2, word.count / 3) { return name }
    // A truncated name ("wan2gp_dir") is a likely slip too.
    if lower.count >= 3 { return candidates.sorted().first { $0.lowercased().hasPrefix(lower) } }
    return nil
}

func editDistance(_ a: String, _ b: String) -> Int {
    let a = Array(a), b = Array(b)
    if a.isEmpty { return b.count }
    if b.isEmpty { return a.count }
    var prev = Array(0...b.count)
    var cur = [Int](repeating: 0, count: b.count + 1)
    for i in 1...a.count {
        cur[0] = i
        for j in 1...b.count {
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
        }
        swap(&prev, &cur)
    }
    return prev[b.count]
}
