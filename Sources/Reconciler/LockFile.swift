import Crypto
import Foundation
import Inventory
import Manifest
import Rendering
import Planner

/// Errors of the lock stage.
public enum LockError: Error, CustomStringConvertible {
    case outOfDate(path: String, differences: [String])

    public var description: String {
        switch self {
        case .outOfDate(let path, let differences):
            let shown = differences.prefix(20).map { "  \($0)" }.joined(separator: "\n")
            let more = differences.count > 20 ? "\n  … and \(differences.count - 20) more" : ""
            return "\(path) does not match the manifest (--locked); run 'wgpm lock' and commit the result:\n\(shown)\(more)"
        }
    }
}

/// `wgpm.lock`: every desired file with its URL, repo, the commit it was resolved at, its
/// identity and size. Written sorted by path, one key per line, so a change reads well in a diff.
public struct LockFile: Sendable, Equatable {
    public static let formatVersion = 1
    /// sha256 of the manifest text the lock was made from: when it matches, the lock alone says
    /// which files the manifest wants, and neither the catalog nor the network is needed.
    public var manifestSHA256: String
    public var files: [DesiredFile]
    /// The manifest's models with their settings, so `wgpm diff` of two locks can name a
    /// settings change; nil in locks written before wgpm recorded them.
    public var models: [ModelRecord]?

    public init(manifestSHA256: String, files: [DesiredFile], models: [ModelRecord]? = nil) {
        self.manifestSHA256 = manifestSHA256
        self.files = files.sorted { $0.path < $1.path }
        self.models = models?.sorted { $0.id < $1.id }
    }

    /// `wgpm.yaml` → `wgpm.lock`, `manifests/a.yaml` → `manifests/a.lock`.
    public static func path(forManifest manifest: String) -> String {
        let ns = manifest as NSString
        let ext = ns.pathExtension
        return (ext == "yaml" || ext == "yml" ? ns.deletingPathExtension : manifest) + ".lock"
    }

    public static func digest(_ text: String) -> String {
        hexString(SHA256.hash(data: Data(text.utf8)))
    }

    /// What to do about a lock that cannot be used (said in every such error).
    static let remedy = "Fix or remove the entries named below (and find out who changed the lock), or run 'wgpm lock --update' to resolve every file again."

    /// Reads a lock file; nil when there is none. Every entry is checked before any is used:
    /// a lock is committed by others, and its paths are written to and its commits fetched.
    public static func load(_ path: String) throws -> LockFile? {
        guard FileManager.default.fileExists(atPath: path) else { return nil }
        let document = try decodeVersioned(Document.self, at: path, kind: .lock, version: formatVersion, remedy: remedy)
        var problems = EntryProblems()
        var seen: [String: Int] = [:]
        for (i, e) in document.files.enumerated() {
            let entry = "files[\(i)]"
            problems.path(e.path, at: entry)
            if let first = seen.updateValue(i, forKey: e.path) { problems.add(entry, path: e.path, "listed twice (also files[\(first)])") }
            if !isHTTPURL(e.url) { problems.add(entry, path: e.path, "url '\(shown(e.url))' is not an http(s) URL") }
            if let c = e.commit, !isHex(c, count: 40) { problems.add(entry, path: e.path, "commit must be 40 lowercase hexadecimal characters") }
            if let h = e.sha256, !isHex(h, count: 64) { problems.add(entry, path: e.path, "sha256 must be 64 lowercase hexadecimal characters") }
            if let h = e.git_sha1, !isHex(h, count: 40) { problems.add(entry, path: e.path, "git_sha1 must be 40 lowercase hexadecimal characters") }
            if let n = e.size, n < 0 { problems.add(entry, path: e.path, "size must not be negative") }
        }
        if !problems.lines.isEmpty {
            let n = problems.lines.count
            throw FormatError(file: path, kind: .lock, reason: n == 1 ? "1 entry is not acceptable" : "\(n) entries are not acceptable",
                              entries: problems.lines, remedy: remedy)
        }
        for (i, m) in (document.models ?? []).enumerated() where m.id.isEmpty || m.id.unicodeScalars.contains(where: { $0.value < 0x20 }) {
            problems.lines.append("models[\(i)]: id '\(shown(m.id))' is not a model id")
        }
        if !problems.lines.isEmpty {
            throw FormatError(file: path, kind: .lock, reason: "its models list is not acceptable", entries: problems.lines, remedy: remedy)
        }
        return LockFile(manifestSHA256: document.manifest_sha256, files: document.files.map(\.desiredFile), models: document.models)
    }

    /// The lock as written: sorted keys, one key per line, a trailing newline.
    public func render() throws -> String {
        try renderJSON(Document(manifest_sha256: manifestSHA256, files: files.map(Entry.init), models: models))
    }

    public func write(to path: String) throws { try writeAtomically(try render(), to: path) }
}

extension LockFile {
    /// The lock's JSON, format_version 1. Key names are the file format: renaming one is a new version.
    struct Document: Codable {
        var format_version = LockFile.formatVersion
        var manifest_sha256: String
        var generated_by: String? = "wgpm lock"
        var files: [Entry]
        /// Optional in format_version 1: locks of earlier wgpm versions have none.
        var models: [ModelRecord]?
    }

    /// One pinned file. Optional keys are left out when unknown; `wan2gp_downloads` only when false.
    struct Entry: Codable {
        var path: String
        var url: String
        var repo: String?
        var commit: String?
        var size: Int64?
        var sha256: String?
        var git_sha1: String?
        var wanted_by: [String]?
        var wan2gp_downloads: Bool?

        init(_ f: DesiredFile) {
            path = f.path
            url = f.url
            repo = f.repo
            commit = f.commit
            size = f.expected.size
            sha256 = f.expected.sha256
            git_sha1 = f.expected.gitSHA1
            wanted_by = f.wantedBy
            wan2gp_downloads = f.downloadable ? nil : false
        }

        var desiredFile: DesiredFile {
            DesiredFile(path: path, url: url, repo: repo, commit: commit,
                        expected: FileIdentity(size: size, sha256: sha256, gitSHA1: git_sha1),
                        wantedBy: wanted_by ?? [], downloadable: wan2gp_downloads ?? true)
        }
    }
}
