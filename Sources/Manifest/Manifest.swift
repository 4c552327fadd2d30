import Catalog
import Foundation
import func Planner.confinementProblem
import Yams

/// Errors of the manifest stage. Every problem of a file is collected before this is thrown.
public enum ManifestError: Error, CustomStringConvertible {
    case unreadable(file: String, reason: String)
    case invalid([Problem])

    public var description: String {
        switch self {
        case .unreadable(let file, let reason):
            return "\(file): cannot read the manifest (\(reason)). Pass its path with -m, or run 'wgpm init' to write one."
        case .invalid(let problems):
            let head = problems.count == 1 ? "1 problem" : "\(problems.count) problems"
            return "\(problems.first?.file ?? "manifest"): \(head); nothing was done:\n"
                + problems.sorted().map { "  \($0)" }.joined(separator: "\n")
        }
    }
}

/// A model entry of the manifest with the settings that apply to it.
public struct ManifestModel: Hashable, Sendable {
    public var id: String
    public var settings: ModelSettings
    /// Position in the manifest, for messages.
    public var line: Int
}

/// An extra file that no model definition names.
public struct ManifestFile: Hashable, Sendable {
    public var url: String
    /// Relative to the Wan2GP directory, below `ckpts/` or `loras/`.
    public var path: String
    public var sha256: String?
    public var line: Int
}

/// A parsed and validated `wgpm.yaml` (format version 1).
public struct Manifest: Hashable, Sendable {
    public var file: String
    public var defaults: ModelSettings
    public var models: [ManifestModel]
    public var files: [ManifestFile]
    /// The manifest text as read.
    public var text: String

    /// What the manifest means, without comments, layout or line numbers: a saved plan
    /// fingerprints this, so reformatting or commenting the manifest does not make it stale.
    public var content: String {
        func describe(_ s: ModelSettings) -> String {
            "\(s.transformerQuantization.rawValue) \(s.textEncoderQuantization.rawValue) \(s.dtype.rawValue) shared=\(s.sharedFiles) all=\(s.allVariants)"
        }
        var lines = ["defaults \(describe(defaults))"]
        lines += models.map { "model \($0.id) \(describe($0.settings))" }
        lines += files.map { "file \($0.path) \($0.url) \($0.sha256 ?? "-")" }
        return lines.joined(separator: "\n")
    }

    static let topKeys = ["version", "settings", "models", "files"]
    static let settingKeys = ["transformer_quantization", "text_encoder_quantization", "dtype", "shared_files"]
    static let modelKeys = ["id", "variants"] + settingKeys
    static let fileKeys = ["url", "path", "sha256"]

    /// Reads and validates a manifest file against the model ids of a catalog.
    /// `knownModels` nil skips the id check (a lock made from this exact text vouches for the ids).
    public static func load(path: String, knownModels: [String]?) throws -> Manifest {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            let reason = FileManager.default.fileExists(atPath: path) ? "not readable UTF-8 text" : "no such file"
            throw ManifestError.unreadable(file: path, reason: reason)
        }
        return try parse(text, file: path, knownModels: knownModels)
    }

    /// Validates manifest text; `file` names it in messages.
    public static func parse(_ text: String, file: String, knownModels: [String]?) throws -> Manifest {
        var check = YAMLChecker(file: file)
        guard let root = check.compose(text) else {
            if check.problems.isEmpty {
                check.report(nil, "the manifest is empty; it needs at least 'version: 1' and 'models:'")
            }
            throw ManifestError.invalid(check.problems)
        }
        var defaults = ModelSettings()
        var models: [ManifestModel] = []
        var files: [ManifestFile] = []

        if let top = check.mapping(root, allowed: topKeys, context: "the manifest") {
            if let v = top["version"] {
                if v.int != 1 { check.report(v, "version must be 1 (this wgpm reads manifest format version 1)") }
            } else {
                check.report(root, "missing 'version: 1' at the top of the manifest")
            }
            if let s = top["settings"], let map = check.mapping(s, allowed: settingKeys, context: "settings") {
                apply(map, to: &defaults, check: &check, context: "settings")
            }
            if let m = top["models"] {
                models = parseModels(m, defaults: defaults, knownModels: knownModels, check: &check)
            } else if top["files"] == nil, check.problems.isEmpty {
                check.report(root, "the manifest lists no 'models:' and no 'files:'; add at least one model id")
            }
            if let f = top["files"] { files = parseFiles(f, check: &check) }
        }
        if !check.problems.isEmpty { throw ManifestError.invalid(check.problems) }
        return Manifest(file: file, defaults: defaults, models: models, files: files, text: text)
    }

    static func apply(_ map: [String: Node], to settings: inout ModelSettings, check: inout YAMLChecker, context: String) {
        if let v = check.choice(map["transformer_quantization"], "\(context).transformer_quantization", as: ModelSettings.Quantization.self) {
            settings.transformerQuantization = v
        }
        if let v = check.choice(map["text_encoder_quantization"], "\(context).text_encoder_quantization", as: ModelSettings.TextEncoderQuantization.self) {
            settings.textEncoderQuantization = v
        }
        // Wan2GP's own default ("", shown as auto) is bf16 on a GPU that has it, which every GPU
        // its models fit on does; fp16 has to be asked for.
        if let node = map["dtype"], let s = node.string, ["auto", ""].contains(s.lowercased()) {
            settings.dtype = .bf16
        } else if let v = check.choice(map["dtype"], "\(context).dtype (or auto)", as: ModelSettings.DType.self) {
            settings.dtype = v
        }
        if let v = check.bool(map["shared_files"], "\(context).shared_files") { settings.sharedFiles = v }
    }

    static func parseModels(_ node: Node, defaults: ModelSettings, knownModels: [String]?,
                            check: inout YAMLChecker) -> [ManifestModel] {
        guard let seq = node.sequence else {
            check.report(node, "models must be a list of model ids (e.g. '- t2v')")
            return []
        }
        let known = Set(knownModels ?? [])
        var out: [ManifestModel] = []
        var seen: [String: Int] = [:]
        for item in seq {
            var settings = defaults
            let idNode: Node?
            if item.scalar != nil {
                idNode = item
            } else if let map = check.mapping(item, allowed: modelKeys, context: "a model entry") {
                idNode = map["id"]
                if idNode == nil { check.report(item, "a model entry needs 'id:' (the model id, e.g. i2v_2_2)") }
                apply(map, to: &settings, check: &check, context: "model")
                if let v = map["variants"] {
                    switch v.scalar?.string {
                    case "all": settings.allVariants = true
                    case "default": settings.allVariants = false
                    default: check.report(v, "variants must be 'all' or 'default'")
                    }
                }
            } else {
                continue
            }
            guard let idNode, let id = check.string(idNode, "model id") else { continue }
            let line = idNode.mark?.line ?? 0
            if let knownModels, !known.contains(id) {
                let hint = closest(to: id, in: knownModels).map { "; did you mean \($0)?" } ?? "; run 'wgpm models' to list them"
                check.report(idNode, "unknown model id '\(id)'\(hint)")
                continue
            }
            if let first = seen[id] {
                check.report(idNode, "model '\(id)' is listed twice (first on line \(first)); keep one entry")
                continue
            }
            seen[id] = line
            out.append(ManifestModel(id: id, settings: settings, line: line))
        }
        return out
    }

    static func parseFiles(_ node: Node, check: inout YAMLChecker) -> [ManifestFile] {
        guard let seq = node.sequence else {
            check.report(node, "files must be a list of {url, path} entries")
            return []
        }
        var out: [ManifestFile] = []
        var seen: Set<String> = []
        for item in seq {
            guard let map = check.mapping(item, allowed: fileKeys, context: "a files entry") else { continue }
            let url = check.string(map["url"], "files.url")
            let path = check.string(map["path"], "files.path")
            if map["url"] == nil { check.report(item, "a files entry needs 'url:'") }
            if map["path"] == nil { check.report(item, "a files entry needs 'path:' (e.g. loras/wan/name.safetensors)") }
            if let url, !(url.hasPrefix("https://") || url.hasPrefix("http://")) {
                check.report(map["url"], "url must start with https:// (got '\(url)')")
            }
            var sha: String?
            if let s = check.string(map["sha256"], "files.sha256") {
                let lower = s.lowercased()
                if lower.count == 64, lower.allSatisfy({ $0.isHexDigit }) { sha = lower }
                else { check.report(map["sha256"], "sha256 must be 64 hexadecimal characters") }
            }
            if let path {
                if let problem = pathProblem(path) { check.report(map["path"], problem); continue }
                if !seen.insert(path).inserted { check.report(map["path"], "path '\(path)' is listed twice") }
                if let url { out.append(ManifestFile(url: url, path: path, sha256: sha, line: item.mark?.line ?? 0)) }
            }
        }
        return out
    }

    /// Why a user-given path is not acceptable, or nil: the one rule every path wgpm writes passes.
    static func pathProblem(_ path: String) -> String? { confinementProblem(path) }
}
