import Catalog
import Foundation
import Yams

/// Errors of the config stage.
public enum ConfigError: Error, CustomStringConvertible {
    case notFound(searched: [String])
    case unreadable(file: String, reason: String)
    case invalid([Problem])
    case missingDirectory(key: String, path: String, file: String)

    public var description: String {
        switch self {
        case .notFound(let searched):
            return "no config file found (looked for \(searched.joined(separator: ", "))). Copy config.yaml.example to one of these places and set wan2gp_directory, or pass --config PATH."
        case .unreadable(let file, let reason):
            return "\(file): cannot read the config file (\(reason)). Check the path and its permissions."
        case .invalid(let problems):
            return "\(problems.first?.file ?? "config"): \(problems.count == 1 ? "1 problem" : "\(problems.count) problems"):\n"
                + problems.sorted().map { "  \($0)" }.joined(separator: "\n")
        case .missingDirectory(let key, let path, let file):
            return "\(file): \(key) is \(path), which does not exist or is not a directory. Fix \(key) in the config."
        }
    }
}

/// A local store searched for content before downloading (SPEC §1 `sources:`).
public enum SourceConfig: Hashable, Sendable {
    case invokeai(db: String, modelsDir: String)
    case hfCache(String)
    case directory(String)
}

public enum LinkModeSetting: String, Sendable, CaseIterable { case symlink, hardlink, copy }

/// `when_source_locked`: what plan does with a source database that stays locked by another
/// program for `source_lock_timeout` seconds.
public enum LockedSourceSetting: String, Sendable, CaseIterable { case fail, skip }

/// The machine's config with every path made absolute and every default filled in.
public struct MachineConfig: Sendable {
    public var file: String?
    public var wan2gpDirectory: String
    public var ckptsDirectory: String
    public var lorasDirectory: String
    public var stateDirectory: String
    /// Where `wgpm trace` keeps what it learned of Wan2GP versions, by fingerprint.
    public var knowledgeDirectory: String { (stateDirectory as NSString).appendingPathComponent("knowledge") }
    /// Hub base URL without a trailing slash; `HF_ENDPOINT` wins over the file.
    public var hubEndpoint: String
    public var tokenEnv: String
    /// The token, when one is configured. Never printed.
    public var token: String?
    public var bandwidthLimitKB: Int
    public var parallelDownloads: Int
    public var parallelHashWorkers: Int
    public var linkMode: LinkModeSetting
    public var minFreeGB: Int
    /// `min_free_gb` in bytes (decimal gigabytes, as free space is shown).
    public var minFreeBytes: Int64 { Int64(minFreeGB) * 1_000_000_000 }
    public var sources: [SourceConfig]
    /// Seconds plan waits for a source database another program has locked (InvokeAI writing in
    /// rollback-journal mode) before `whenSourceLocked` applies.
    public var sourceLockTimeout: Int = 60
    public var whenSourceLocked: LockedSourceSetting = .fail
    /// Folders outside ckpts/ and loras/ that a symlinked subfolder of them may lead to
    /// (`linked_folders`); any other symlinked folder is refused as an escape.
    public var linkedFolders: [String] = []
    /// Range requests one large file is fetched over at once (`connections_per_file`).
    public var connectionsPerFile = 16
    /// Connections all downloads of a run hold together (`max_connections`); at least
    /// `parallel_downloads`, since every running download needs one.
    public var maxConnections = 32
    /// A first connection at least this fast (MB/s) carries its file alone; 0: never
    /// (`single_stream_above_mbs`).
    public var singleStreamAboveMBs = 100
    /// The Python `wgpm trace` runs Wan2GP's code with (`wan2gp_python`); nil: the checkout's
    /// own venv (`venv/bin/python`, `.venv/bin/python`) when there is one, else `python3`.
    public var wan2gpPython: String?
    /// Where the ckpts and loras folders came from, for `doctor`: a wgpm key, Wan2GP's own
    /// `wgp_config.json` (`checkpoints_paths`, `loras_root`), or the default below the checkout.
    public var folderOrigins: [String: String] = [:]

    static let keys = ["linked_folders", "wan2gp_directory", "ckpts_directory", "loras_directory", "state_directory", "hub",
                       "bandwidth_limit_kb", "parallel_downloads", "parallel_hash_workers", "link_mode",
                       "min_free_gb", "sources", "source_lock_timeout", "when_source_locked", "connections_per_file", "max_connections", "single_stream_above_mbs",
                       "invokeai_db", "invokeai_models_dir", "wan2gp_python"]

    /// The config files tried, in order, when none is named.
    public static func searchPath(environment env: [String: String], cwd: String) -> [String] {
        var list: [String] = []
        if let p = env["WGPM_CONFIG"], !p.isEmpty { list.append(expandHome(p, env: env)) }
        list.append((cwd as NSString).appendingPathComponent("config.yaml"))
        list.append(expandHome("~/.config/wgpm/config.yaml", env: env))
        return list
    }

    /// Finds and reads the config: `--config PATH`, `$WGPM_CONFIG`, `./config.yaml`, `~/.config/wgpm/config.yaml`.
    public static func load(explicit: String?, environment env: [String: String], cwd: String) throws -> MachineConfig {
        let path: String
        if let explicit {
            path = expandHome(explicit, env: env)
        } else if let p = env["WGPM_CONFIG"], !p.isEmpty {
            path = expandHome(p, env: env)
        } else {
            let candidates = searchPath(environment: env, cwd: cwd)
            guard let found = candidates.first(where: { FileManager.default.fileExists(atPath: $0) }) else {
                throw ConfigError.notFound(searched: candidates)
            }
            path = found
        }
        let text = try readText(path)
        return try parse(text, file: path, environment: env)
    }

    /// For `doctor`: the settings a config's good lines give (a problem's setting keeps its
    /// default), and the problems; nil settings when the file cannot be found or read as YAML.
    public static func loadLeniently(explicit: String?, environment env: [String: String], cwd: String) -> (config: MachineConfig?, problem: Error?) {
        do {
            return (try load(explicit: explicit, environment: env, cwd: cwd), nil)
        } catch let error as ConfigError {
            guard case .invalid = error, let path = explicit.map({ expandHome($0, env: env) })
                    ?? env["WGPM_CONFIG"].flatMap({ $0.isEmpty ? nil : expandHome($0, env: env) })
                    ?? searchPath(environment: env, cwd: cwd).first(where: { FileManager.default.fileExists(atPath: $0) }),
                  let text = try? readText(path), let lenient = try? parseCollecting(text, file: path, environment: env).config,
                  !lenient.wan2gpDirectory.isEmpty else { return (nil, error) }
            return (lenient, error)
        } catch {
            return (nil, error)
        }
    }

    /// The settings used when no config file exists: enough for a CI preview with a lock file
    /// (no Wan2GP directory; ckpts/ and loras/ in the current folder).
    public static func fallback(environment env: [String: String], cwd: String) throws -> MachineConfig {
        var endpoint = env["HF_ENDPOINT"].flatMap { $0.isEmpty ? nil : $0 } ?? "https://huggingface.co"
        while endpoint.hasSuffix("/") { endpoint.removeLast() }
        return MachineConfig(file: nil, wan2gpDirectory: "", ckptsDirectory: cwd + "/ckpts", lorasDirectory: cwd + "/loras",
                             stateDirectory: expandHome("~/.local/state/wgpm", env: env), hubEndpoint: endpoint,
                             tokenEnv: "HF_TOKEN", token: token(env: env, tokenEnv: "HF_TOKEN"), bandwidthLimitKB: 0,
                             parallelDownloads: 2, parallelHashWorkers: 0, linkMode: .symlink, minFreeGB: 5, sources: [])
    }

    /// Validates config text and resolves it against the environment.
    public static func parse(_ text: String, file: String, environment env: [String: String]) throws -> MachineConfig {
        let (cfg, problems) = try parseCollecting(text, file: file, environment: env)
        if !problems.isEmpty { throw ConfigError.invalid(problems) }
        var isDir: ObjCBool = false
        if !FileManager.default.fileExists(atPath: cfg.wan2gpDirectory, isDirectory: &isDir) || !isDir.boolValue {
            throw ConfigError.missingDirectory(key: "wan2gp_directory", path: cfg.wan2gpDirectory, file: file)
        }
        return cfg
    }

    /// The settings and every problem found; throws only when the text is not a YAML mapping.
    static func parseCollecting(_ text: String, file: String, environment env: [String: String]) throws -> (config: MachineConfig, problems: [Problem]) {
        var check = YAMLChecker(file: file)
        guard let root = check.compose(text), let map = check.mapping(root, allowed: keys, context: "the config") else {
            if check.problems.isEmpty { check.report(nil, "the config is empty; set at least wan2gp_directory") }
            throw ConfigError.invalid(check.problems)
        }
        func path(_ key: String) -> String? {
            check.string(map[key], key).map { absolutize(expandHome($0, env: env), relativeTo: file) }
        }
        let wan2gp = path("wan2gp_directory")
        if map["wan2gp_directory"] == nil { check.report(root, "wan2gp_directory is required: the folder that holds Wan2GP's defaults/") }
        var endpoint = "https://huggingface.co"
        var tokenEnv = "HF_TOKEN"
        if let hub = map["hub"], let h = check.mapping(hub, allowed: ["endpoint", "token_env"], context: "hub") {
            if let e = check.string(h["endpoint"], "hub.endpoint") { endpoint = e }
            if let t = check.string(h["token_env"], "hub.token_env") { tokenEnv = t }
        }
        if let e = env["HF_ENDPOINT"], !e.isEmpty { endpoint = e }
        while endpoint.hasSuffix("/") { endpoint.removeLast() }
        if !(endpoint.hasPrefix("https://") || endpoint.hasPrefix("http://")) {
            check.report(map["hub"], "hub endpoint '\(endpoint)' must start with https:// or http://")
        }
        let linkMode = check.choice(map["link_mode"], "link_mode", as: LinkModeSetting.self) ?? .symlink
        var sources: [SourceConfig] = []
        if let s = map["sources"] { sources = parseSources(s, check: &check, env: env, file: file) }
        if let db = path("invokeai_db") {
            let models = path("invokeai_models_dir")
                ?? invokeAIModelsDirectory(forDatabase: db)
            sources.insert(.invokeai(db: db, modelsDir: models), at: 0)
        }
        // Wan2GP's own settings place its folders when wgpm's config does not.
        let wgpConfig = wan2gp.map { Wan2GPServerConfig.read(wan2gpDirectory: $0) } ?? Wan2GPServerConfig()
        let ckpts = path("ckpts_directory") ?? wgpConfig.checkpointsDirectory ?? ((wan2gp ?? "") as NSString).appendingPathComponent("ckpts")
        let loras = path("loras_directory") ?? wgpConfig.lorasDirectory ?? ((wan2gp ?? "") as NSString).appendingPathComponent("loras")
        var cfg = MachineConfig(
            file: file,
            wan2gpDirectory: wan2gp ?? "",
            ckptsDirectory: ckpts,
            lorasDirectory: loras,
            stateDirectory: path("state_directory") ?? expandHome("~/.local/state/wgpm", env: env),
            hubEndpoint: endpoint,
            tokenEnv: tokenEnv,
            token: token(env: env, tokenEnv: tokenEnv),
            bandwidthLimitKB: check.int(map["bandwidth_limit_kb"], "bandwidth_limit_kb") ?? 0,
            parallelDownloads: check.int(map["parallel_downloads"], "parallel_downloads", min: 1) ?? 2,
            parallelHashWorkers: check.int(map["parallel_hash_workers"], "parallel_hash_workers") ?? 0,
            linkMode: linkMode,
            minFreeGB: check.int(map["min_free_gb"], "min_free_gb") ?? 5,
            sources: sources,
            sourceLockTimeout: check.int(map["source_lock_timeout"], "source_lock_timeout") ?? 60,
            whenSourceLocked: check.choice(map["when_source_locked"], "when_source_locked", as: LockedSourceSetting.self) ?? .fail)
        if let n = check.int(map["connections_per_file"], "connections_per_file", min: 1) {
            if n > 64 { check.report(map["connections_per_file"]!, "connections_per_file must be at most 64") }
            cfg.connectionsPerFile = n
        }
        if let n = check.int(map["single_stream_above_mbs"], "single_stream_above_mbs", min: 0) { cfg.singleStreamAboveMBs = n }
        cfg.wan2gpPython = path("wan2gp_python")
        cfg.folderOrigins["ckpts"] = map["ckpts_directory"] != nil ? "ckpts_directory in \(file)"
            : wgpConfig.checkpointsDirectory != nil ? "checkpoints_paths[0] in \(wgpConfig.file)" : "the default, below wan2gp_directory"
        cfg.folderOrigins["loras"] = map["loras_directory"] != nil ? "loras_directory in \(file)"
            : wgpConfig.lorasDirectory != nil ? "loras_root in \(wgpConfig.file)" : "the default, below wan2gp_directory"
        if let problem = wgpConfig.problem { cfg.folderOrigins["problem"] = problem }
        if let n = check.int(map["max_connections"], "max_connections", min: 1) {
            if n < cfg.parallelDownloads {
                check.report(map["max_connections"]!, "max_connections (\(n)) is less than parallel_downloads (\(cfg.parallelDownloads)): every running download needs a connection; raise max_connections or lower parallel_downloads")
            }
            cfg.maxConnections = n
        } else {
            cfg.maxConnections = max(cfg.maxConnections, cfg.parallelDownloads)
        }
        if let folders = map["linked_folders"] {
            if let seq = folders.sequence {
                cfg.linkedFolders = seq.compactMap { check.string($0, "linked_folders entry").map { absolutize(expandHome($0, env: env), relativeTo: file) } }
            } else {
                check.report(folders, "linked_folders must be a list of folders (e.g. - /mnt/models)")
            }
        }
        return (cfg, check.problems)
    }

    static func parseSources(_ node: Node, check: inout YAMLChecker, env: [String: String], file: String) -> [SourceConfig] {
        guard let seq = node.sequence else { check.report(node, "sources must be a list"); return [] }
        var out: [SourceConfig] = []
        for item in seq {
            guard let map = check.mapping(item, allowed: ["invokeai", "hf_cache", "directory"], context: "a source"),
                  map.count == 1, let (kind, value) = map.first else {
                if item.mapping?.count ?? 0 > 1 { check.report(item, "each source names exactly one of invokeai, hf_cache, directory") }
                continue
            }
            func p(_ n: Node?, _ what: String) -> String? {
                check.string(n, what).map { absolutize(expandHome($0, env: env), relativeTo: file) }
            }
            switch kind {
            case "invokeai":
                guard let m = check.mapping(value, allowed: ["db", "models_dir"], context: "invokeai source") else { continue }
                guard let db = p(m["db"], "invokeai.db") else { check.report(value, "invokeai source needs db: (path of invokeai.db)"); continue }
                let models = p(m["models_dir"], "invokeai.models_dir")
                    ?? invokeAIModelsDirectory(forDatabase: db)
                out.append(.invokeai(db: db, modelsDir: models))
            case "hf_cache":
                // `auto` follows the Hugging Face conventions: HF_HUB_CACHE, else $HF_HOME/hub.
                if value.scalar?.string == "auto" || value.scalar?.string == "" {
                    let cache = env["HF_HUB_CACHE"].map { expandHome($0, env: env) }
                        ?? env["HUGGINGFACE_HUB_CACHE"].map { expandHome($0, env: env) }
                        ?? (hfHome(env: env) as NSString).appendingPathComponent("hub")
                    out.append(.hfCache(cache))
                } else if let path = p(value, "hf_cache") {
                    out.append(.hfCache(path))
                }
            default:
                if let path = p(value, "directory") { out.append(.directory(path)) }
            }
        }
        return out
    }

    /// `$<token_env>` (and the legacy `HUGGING_FACE_HUB_TOKEN`), else `HF_TOKEN_PATH`, else `$HF_HOME/token`.
    static func token(env: [String: String], tokenEnv: String) -> String? {
        for name in [tokenEnv, "HUGGING_FACE_HUB_TOKEN"] {
            if let t = env[name]?.trimmingCharacters(in: .whitespacesAndNewlines), !t.isEmpty { return t }
        }
        let path = env["HF_TOKEN_PATH"].map { expandHome($0, env: env) }
            ?? (hfHome(env: env) as NSString).appendingPathComponent("token")
        if let t = try? String(contentsOfFile: path, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines), !t.isEmpty {
            return t
        }
        return nil
    }

    /// `$HF_HOME`, else `$XDG_CACHE_HOME/huggingface`, else `~/.cache/huggingface`.
    public static func hfHome(env: [String: String]) -> String {
        if let h = env["HF_HOME"], !h.isEmpty { return expandHome(h, env: env) }
        if let x = env["XDG_CACHE_HOME"], !x.isEmpty { return (x as NSString).appendingPathComponent("huggingface") }
        return expandHome("~/.cache/huggingface", env: env)
    }
}

/// A config file's text; the error says why in the system's words ("permission denied"), not
/// in Foundation's (`Error Domain=NSCocoaErrorDomain …`).
func readText(_ path: String) throws -> String {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { throw ConfigError.unreadable(file: path, reason: plainError(errno)) }
    defer { close(fd) }
    var bytes: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 1 << 16)
    while true {
        let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n < 0 {
            if errno == EINTR { continue }
            throw ConfigError.unreadable(file: path, reason: plainError(errno))  // EISDIR for a folder
        }
        if n == 0 { break }
        bytes += buffer[0..<n]
    }
    guard let text = String(bytes: bytes, encoding: .utf8) else {
        throw ConfigError.unreadable(file: path, reason: "it is not UTF-8 text")
    }
    return text
}

/// `strerror` in lower case, as it reads inside a sentence.
func plainError(_ code: Int32) -> String {
    let text = String(cString: strerror(code))
    return text.prefix(1).lowercased() + text.dropFirst()
}

/// `~` and `~/…` become the home directory (`$HOME`).
public func expandHome(_ path: String, env: [String: String]) -> String {
    guard path == "~" || path.hasPrefix("~/") else { return path }
    let home = env["HOME"] ?? NSHomeDirectory()
    return home + path.dropFirst()
}

/// Relative paths in a config file are relative to the folder that holds it.
func absolutize(_ path: String, relativeTo file: String) -> String {
    if path.hasPrefix("/") { return (path as NSString).standardizingPath }
    let base = (absolutePath(file) as NSString).deletingLastPathComponent
    return ((base as NSString).appendingPathComponent(path) as NSString).standardizingPath
}

func absolutePath(_ path: String) -> String {
    path.hasPrefix("/") ? path : (FileManager.default.currentDirectoryPath as NSString).appendingPathComponent(path)
}

/// InvokeAI keeps its database at `<root>/databases/invokeai.db` and its models at
/// `<root>/models`.
func invokeAIModelsDirectory(forDatabase db: String) -> String {
    (((db as NSString).deletingLastPathComponent as NSString).deletingLastPathComponent as NSString).appendingPathComponent("models")
}
