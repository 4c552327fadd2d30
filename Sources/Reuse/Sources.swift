import Foundation
import GRDB
import Inventory
import Planner
import State

/// One file in a local store that may hold content a manifest wants.
public struct SourceFile: Hashable, Sendable {
    /// Display name of the store, e.g. `invokeai`, `hf_cache`, `directory:/mnt/models`.
    public var source: String
    /// Absolute path of the file itself (symlinks resolved), the path a link points to.
    public var path: String
    public var stamp: FileStamp
    /// A sha256 the store states (HF blob name, InvokeAI `sha256:` hash or Hub metadata).
    public var sha256: String?
    /// A git blob sha1 the store states (HF blob name of a small file).
    public var gitSHA1: String?
    /// Hub URLs this content came from, normalised (`normalizeURL`).
    public var urls: [String]

    public var size: Int64 { stamp.size }
}

/// A store scanned for files; problems are warnings that name the store, never crashes. The one
/// error is a store that cannot be read now but will be later (a locked database): planning
/// without it would silently download what it holds.
public protocol LocalSource: Sendable {
    var name: String { get }
    func scan(fileSystem: FileSystem, warn: (String) -> Void) throws -> [SourceFile]
}

/// Weight files inside folder models and directories worth indexing.
let weightSuffixes = [".safetensors", ".bin", ".ckpt", ".pt", ".pth", ".gguf", ".onnx", ".sft"]

func stamp(_ st: FileStatus) -> FileStamp {
    FileStamp(device: st.device, inode: st.inode, size: st.size, mtimeNanoseconds: st.mtimeNanoseconds)
}

/// `https://huggingface.co/ORG/REPO/resolve/main/PATH`
func hubURL(repo: String, path: String) -> String {
    normalizeURL("https://huggingface.co/\(repo)/resolve/main/\(path)")
}

func isHex(_ s: Substring, count: Int) -> Bool {
    s.count == count && s.allSatisfy { ("0"..."9").contains($0) || ("a"..."f").contains($0) }
}

// MARK: - Directory

/// A plain folder, scanned recursively. Directory symlinks are followed once; a loop back to a
/// folder already visited and unreadable entries are skipped with a warning.
public struct DirectorySource: LocalSource {
    public var root: String
    public var name: String { "directory:\(root)" }

    public init(root: String) { self.root = root }

    public func scan(fileSystem fs: FileSystem, warn: (String) -> Void) -> [SourceFile] {
        guard let top = fs.stat(root), top.kind == .directory else {
            warn(FileManager.default.fileExists(atPath: root) ? "source directory \(root) is not a readable folder; skipped"
                 : "source directory \(root) does not exist; skipped (fix or remove it in the config)")
            return []
        }
        var out: [SourceFile] = []
        var visited: Set<String> = ["\(top.device):\(top.inode)"]
        var stack = [root]
        while let dir = stack.popLast() {
            guard let names = try? FileManager.default.contentsOfDirectory(atPath: dir) else {
                warn("\(name): cannot read \(dir); skipped")
                continue
            }
            for entry in names.sorted() {
                if entry == ".wgpm-partial" || entry.hasSuffix(".part") || entry.hasSuffix(".incomplete") { continue }
                let path = dir + "/" + entry
                guard let st = fs.stat(path) else {
                    if fs.lstat(path)?.kind == .symlink { continue }  // dangling link: nothing to index
                    warn("\(name): cannot read \(path); skipped")
                    continue
                }
                switch st.kind {
                case .directory:
                    if visited.insert("\(st.device):\(st.inode)").inserted {
                        stack.append(path)
                    } else {
                        warn("\(name): \(path) leads back to a folder already scanned (symlink loop); skipped")
                    }
                case .file:
                    let real = fs.lstat(path)?.kind == .symlink ? ((try? FileManager.default.destinationOfSymbolicLink(atPath: path)).map {
                        $0.hasPrefix("/") ? $0 : ((path as NSString).deletingLastPathComponent as NSString).appendingPathComponent($0)
                    } ?? path) : path
                    out.append(SourceFile(source: name, path: (real as NSString).standardizingPath, stamp: stamp(st), urls: []))
                default:
                    continue
                }
            }
        }
        return out
    }
}

// MARK: - Hugging Face cache

/// The `huggingface_hub` cache: blobs named by sha256 (LFS) or git sha1 (small files), so a match
/// needs no hashing; snapshots give each blob's repo path, hence its URL.
public struct HFCacheSource: LocalSource {
    public var root: String
    public var name: String { "hf_cache" }

    public init(root: String) { self.root = root }

    public func scan(fileSystem fs: FileSystem, warn: (String) -> Void) -> [SourceFile] {
        guard let repos = try? FileManager.default.contentsOfDirectory(atPath: root) else {
            warn(FileManager.default.fileExists(atPath: root) ? "source hf_cache \(root) is not a readable folder; skipped"
                 : "source hf_cache \(root) does not exist; skipped (fix or remove it in the config)")
            return []
        }
        var out: [SourceFile] = []
        for repoDir in repos.sorted() {
            let parts = repoDir.components(separatedBy: "--")
            guard parts.count >= 2, ["models", "datasets", "spaces"].contains(parts[0]) else { continue }
            let repo = parts.dropFirst().joined(separator: "/")
            let base = root + "/" + repoDir
            // blob name -> repo paths, from the snapshots' symlinks
            var pathsOfBlob: [String: [String]] = [:]
            let snapshots = base + "/snapshots"
            for commit in (try? FileManager.default.contentsOfDirectory(atPath: snapshots)) ?? [] {
                let top = snapshots + "/" + commit
                guard let walker = FileManager.default.enumerator(atPath: top) else { continue }
                while let rel = walker.nextObject() as? String {
                    guard let target = try? FileManager.default.destinationOfSymbolicLink(atPath: top + "/" + rel) else { continue }
                    let blob = (target as NSString).lastPathComponent
                    pathsOfBlob[blob, default: []].append(rel)
                }
            }
            let blobs = base + "/blobs"
            for blob in ((try? FileManager.default.contentsOfDirectory(atPath: blobs)) ?? []).sorted() {
                let b = Substring(blob)
                let isSHA = isHex(b, count: 64)
                guard isSHA || isHex(b, count: 40) else { continue }  // skips *.incomplete and the rest
                let path = blobs + "/" + blob
                // Follow symlinks: a blob may point into the shared Xet store.
                guard let st = fs.stat(path), st.kind == .file else { continue }
                let resolved = (try? FileManager.default.destinationOfSymbolicLink(atPath: path)).map {
                    (($0.hasPrefix("/") ? $0 : blobs + "/" + $0) as NSString).standardizingPath
                } ?? path
                let urls = Set((pathsOfBlob[blob] ?? []).map { hubURL(repo: parts[0] == "models" ? repo : "\(parts[0])/\(repo)", path: $0) })
                out.append(SourceFile(source: name, path: resolved, stamp: stamp(st),
                                      sha256: isSHA ? blob : nil, gitSHA1: isSHA ? nil : blob, urls: urls.sorted()))
            }
        }
        return out
    }
}

// MARK: - InvokeAI

/// What to do with a source database another program keeps locked past `source_lock_timeout`.
public enum LockedSourcePolicy: String, Sendable, CaseIterable {
    /// Stop the plan with an error: without the source, it would download what the source holds.
    case fail
    /// Plan without the source, with a warning.
    case skip
}

/// The database stayed locked by another program for the whole wait.
public struct SourceLockedError: Error, CustomStringConvertible {
    public var database: String
    public var waited: Double

    public var description: String {
        "InvokeAI's database \(database) is locked by another program (InvokeAI writing to it?) and stayed locked for "
            + "\(formatSeconds(waited)); without it wgpm would download files InvokeAI may already have. Close InvokeAI or "
            + "wait for it to finish and run again, or set when_source_locked: skip in the config to plan without it "
            + "(source_lock_timeout sets the wait)."
    }
}

func formatSeconds(_ s: Double) -> String {
    s == s.rounded() ? "\(Int(s)) s" : String(format: "%.1f s", s)
}

/// InvokeAI's model database, read-only and safely while InvokeAI runs (invokeai.md §9): a
/// read-only connection with a busy timeout, never `immutable`; columns selected by name.
///
/// In WAL mode (InvokeAI 5.8+) a reader never waits. In rollback-journal mode a writer's lock
/// blocks readers; that is waited out for up to `lockTimeout` seconds, with a notice once the
/// wait is longer than a normal write, and then fails or skips the source (`whenLocked`).
public struct InvokeAISource: LocalSource {
    public var database: String
    public var modelsDirectory: String
    public var lockTimeout: Double
    public var whenLocked: LockedSourcePolicy
    /// Lines shown while waiting (stderr), as they happen rather than after the plan.
    public var notice: @Sendable (String) -> Void
    public var name: String { "invokeai" }

    /// InvokeAI's own busy timeout: a lock held no longer than this is an ordinary write and
    /// not worth a message (with a shorter bound, half of it is waited quietly).
    static let quietWait = 5.0

    public init(database: String, modelsDirectory: String, lockTimeout: Double = 60, whenLocked: LockedSourcePolicy = .fail,
                notice: @escaping @Sendable (String) -> Void = { _ in }) {
        self.database = database
        self.modelsDirectory = modelsDirectory
        self.lockTimeout = max(0, lockTimeout)
        self.whenLocked = whenLocked
        self.notice = notice
    }

    public struct Row {
        var id: String
        var path: String
        var hash: String
        var source: String
        var sourceType: String
        var fileSize: Int64?
        var sourceURL: String?
        var apiResponse: String?
    }

    /// Why the database was left out: what is wrong, the setting to check when one is the
    /// likely cause, and what skipping it means. Plan prints it as a warning, doctor as a line.
    public struct Problem: Sendable, Equatable {
        public var reason: String
        public var setting: String?
        /// Said after "skipped" in plan's warning.
        public var consequence: String?

        /// "invokeai: …; skipped (check …)", as plan and apply print it.
        public var warning: String {
            "invokeai: \(reason); skipped" + (setting.map { " (check \($0))" } ?? "") + (consequence.map { " \($0)" } ?? "")
        }

        /// "…; fix …", as doctor prints it after its "invokeai" label.
        public var doctorLine: String { reason + (setting.map { "; fix \($0)" } ?? "") }
    }

    /// The rows, for a quick look (`wgpm doctor`): waits no longer than InvokeAI's own busy
    /// timeout, and a lock is a problem like any other reason the database cannot be read.
    public func readRows(problem: (Problem) -> Void) -> [Row]? {
        var probe = self
        probe.lockTimeout = min(lockTimeout, Self.quietWait)
        probe.whenLocked = .fail
        do { return try probe.rows(problem: problem) } catch {
            problem(Problem(reason: "\(error)"))
            return nil
        }
    }

    /// The rows; nil (with a problem) when the database is missing, not InvokeAI's, or locked
    /// past the wait under `.skip`. Throws `SourceLockedError` when locked past the wait under `.fail`.
    public func rows(problem: (Problem) -> Void) throws -> [Row]? {
        guard FileManager.default.fileExists(atPath: database) else {
            problem(Problem(reason: "database \(database) does not exist", setting: "sources.invokeai.db"))
            return nil
        }
        let start = ProcessInfo.processInfo.systemUptime
        var announced = false
        while true {
            let elapsed = ProcessInfo.processInfo.systemUptime - start
            // The first attempt waits as InvokeAI would; later ones wait out the rest.
            let wait = announced ? lockTimeout - elapsed : min(lockTimeout / 2, Self.quietWait)
            do {
                return try readOnce(busyTimeout: max(0, wait), problem: problem)
            } catch let error as DatabaseError where [.SQLITE_BUSY, .SQLITE_LOCKED].contains(error.resultCode.primaryResultCode) {
                let waited = ProcessInfo.processInfo.systemUptime - start
                if waited + 0.05 < lockTimeout && !announced {
                    announced = true
                    notice("waiting for InvokeAI's database \(database): another program holds a lock on it (InvokeAI writing "
                           + "to it?); waiting up to \(formatSeconds(lockTimeout)) in all…")
                    continue
                }
                if whenLocked == .skip {
                    problem(Problem(reason: "database \(database) stayed locked by another program for \(formatSeconds(waited))",
                                    consequence: "(when_source_locked: skip), so what it holds is downloaded instead"))
                    return nil
                }
                throw SourceLockedError(database: database, waited: waited)
            } catch {
                problem(Problem(reason: "cannot read \(database): \(error)"))
                return nil
            }
        }
    }

    func readOnce(busyTimeout: Double, problem: (Problem) -> Void) throws -> [Row]? {
        var config = Configuration()
        config.readonly = true
        config.busyMode = .timeout(busyTimeout)
        let queue = try DatabaseQueue(path: database, configuration: config)
        return try queue.read { db -> [Row]? in
            guard try db.tableExists("models") else {
                problem(Problem(reason: "\(database) has no models table (InvokeAI 3.x or not an InvokeAI database)"))
                return nil
            }
            let columns = Set(try GRDB.Row.fetchAll(db, sql: "PRAGMA table_xinfo(models)").map { $0["name"] as String })
            let needed: Set<String> = ["id", "path", "hash", "source", "source_type", "config"]
            guard needed.isSubset(of: columns) else {
                problem(Problem(reason: "\(database) has a models table of an unknown schema (missing \(needed.subtracting(columns).sorted().joined(separator: ", ")))"))
                return nil
            }
            let size = columns.contains("file_size") ? "file_size" : "NULL AS file_size"
            let api = columns.contains("source_api_response") ? "source_api_response" : "NULL AS source_api_response"
            let rows = try GRDB.Row.fetchAll(db, sql: """
                SELECT id, path, hash, source, source_type, \(size),
                       json_extract(config, '$.source_url') AS source_url, \(api)
                FROM models WHERE source_type <> 'external'
                """)
            return rows.map { r in
                Row(id: r["id"], path: r["path"] ?? "", hash: r["hash"] ?? "", source: r["source"] ?? "",
                    sourceType: r["source_type"] ?? "", fileSize: r["file_size"], sourceURL: r["source_url"],
                    apiResponse: r["source_api_response"])
            }
        }
    }

    public func scan(fileSystem fs: FileSystem, warn: (String) -> Void) throws -> [SourceFile] {
        guard let rows = try rows(problem: { warn($0.warning) }) else { return [] }
        if fs.stat(modelsDirectory)?.kind != .directory {
            warn("invokeai: models_dir \(modelsDirectory) does not exist; only rows with absolute paths can be used (check sources.invokeai.models_dir)")
        }
        var out: [SourceFile] = []
        for row in rows {
            if row.path.hasPrefix("external://") || row.fileSize == 0 { continue }
            if row.path.count > 2, row.path.dropFirst().hasPrefix(":/") { continue }  // a Windows path
            // A relative path is InvokeAI's own models folder's; one that climbs out of it is
            // not a model InvokeAI installed there (an absolute path is an in-place install).
            if !row.path.hasPrefix("/"), pathSegments(row.path).contains("..") {
                warn("invokeai: model \(row.id) has the path '\(printable(row.path))', which climbs out of models_dir; skipped")
                continue
            }
            let abs = row.path.hasPrefix("/") ? row.path : modelsDirectory + "/" + row.path
            guard let st = fs.stat(abs) else { continue }  // a stale record: nothing on disk
            let repoParts = parseRepoSource(row)
            let siblings = row.apiResponse.map(apiSiblings) ?? [:]
            switch st.kind {
            case .file:
                var file = SourceFile(source: name, path: abs, stamp: stamp(st), urls: [])
                // A `sha256:` hash is the file's own only for a single-file model.
                if row.hash.hasPrefix("sha256:") { file.sha256 = String(row.hash.dropFirst(7)).lowercased() }
                if let (repo, sub) = repoParts, let sub {
                    file.urls.append(hubURL(repo: repo, path: sub))
                    if file.sha256 == nil { file.sha256 = publishedSHA(siblings, sub, size: st.size) }
                }
                if row.sourceType == "url" { file.urls.append(normalizeURL(row.source)) }
                if let u = row.sourceURL, !u.isEmpty { file.urls.append(normalizeURL(u)) }
                out.append(file)
            case .directory:
                // Folder hashes are composites: index the weight files inside instead.
                guard let walker = FileManager.default.enumerator(atPath: abs) else { continue }
                while let rel = walker.nextObject() as? String {
                    guard weightSuffixes.contains(where: { rel.hasSuffix($0) }), let fst = fs.stat(abs + "/" + rel), fst.kind == .file else { continue }
                    var file = SourceFile(source: name, path: abs + "/" + rel, stamp: stamp(fst), urls: [])
                    if let (repo, sub) = repoParts {
                        let repoPath = sub.map { "\($0)/\(rel)" } ?? rel
                        file.urls.append(hubURL(repo: repo, path: repoPath))
                        file.sha256 = publishedSHA(siblings, repoPath, size: fst.size)
                    }
                    out.append(file)
                }
            default:
                continue
            }
        }
        return out
    }

    /// `org/repo[:variant][::sub/path]` → (org/repo, sub/path); nil for other source types.
    func parseRepoSource(_ row: Row) -> (String, String?)? {
        guard row.sourceType == "hf_repo_id" else { return nil }
        let halves = row.source.components(separatedBy: "::")
        var repo = halves[0]
        var sub: String? = halves.count > 1 ? halves[1] : nil
        if let colon = repo.firstIndex(of: ":") {
            let after = String(repo[repo.index(after: colon)...])
            repo = String(repo[..<colon])
            let variants = ["fp16", "fp32", "onnx", "openvino", "flax"]
            if sub == nil, !variants.contains(after), !after.hasPrefix("ModelRepoVariant.") { sub = after }  // ≤ 4.2.8 form
        }
        if let s = sub, s.contains("+") { sub = nil }  // a multi-part install: files sit directly in the folder
        return (repo, sub)
    }
}

/// `rfilename -> (size, sha256)` from a `source_api_response`, tolerant of the Python repr forms
/// (`RepoSibling(rfilename='…', size=…, lfs=BlobLfsInfo(sha256='…'))` and `{'rfilename': '…', …}`).
func apiSiblings(_ text: String) -> [String: (size: Int64?, sha256: String)] {
    var out: [String: (Int64?, String)] = [:]
    for piece in text.components(separatedBy: "rfilename").dropFirst() {
        let value = piece.drop(while: { "'\": =".contains($0) })
        let name = String(value.prefix(while: { $0 != "'" && $0 != "\"" }))
        guard !name.isEmpty, let shaRange = piece.range(of: "sha256") else { continue }
        let hex = piece[shaRange.upperBound...].drop(while: { !$0.isHexDigit }).prefix(64).lowercased()
        guard isHex(Substring(hex), count: 64) else { continue }
        var size: Int64?
        if let sizeRange = piece.range(of: "size") {
            size = Int64(String(piece[sizeRange.upperBound...].drop(while: { !$0.isNumber }).prefix(while: { $0.isNumber })))
        }
        out[name] = (size, hex)
    }
    return out
}

/// The sha256 the Hub published for a file, trusted only when the size on disk agrees.
func publishedSHA(_ siblings: [String: (size: Int64?, sha256: String)], _ name: String, size: Int64) -> String? {
    guard let s = siblings[name], s.size == nil || s.size == size else { return nil }
    return s.sha256
}
