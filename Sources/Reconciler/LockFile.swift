import Crypto
import Foundation
import Inventory
import Manifest
import Rendering
import Planner

/// Errors of the lock stage.
public enum LockError: Error, CustomStringConvertible {
    case unreadable(path: String, reason: String)
    case outOfDate(path: String, differences: [String])

    public var description: String {
        switch self {
        case .unreadable(let path, let reason):
            return "\(path): not a wgpm lock file (\(reason)). Regenerate it with 'wgpm lock'."
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

    public init(manifestSHA256: String, files: [DesiredFile]) {
        self.manifestSHA256 = manifestSHA256
        self.files = files.sorted { $0.path < $1.path }
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

    /// Reads a lock file; nil when there is none.
    public static func load(_ path: String) throws -> LockFile? {
        guard let data = FileManager.default.contents(atPath: path) else { return nil }
        guard let root = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw LockError.unreadable(path: path, reason: "not JSON")
        }
        guard root["format_version"] as? Int == formatVersion else {
            throw LockError.unreadable(path: path, reason: "format_version is not \(formatVersion)")
        }
        var files: [DesiredFile] = []
        for e in root["files"] as? [[String: Any]] ?? [] {
            guard let path = e["path"] as? String, let url = e["url"] as? String else {
                throw LockError.unreadable(path: path, reason: "an entry lacks path or url")
            }
            files.append(DesiredFile(path: path, url: url, repo: e["repo"] as? String, commit: e["commit"] as? String,
                                     expected: FileIdentity(size: (e["size"] as? NSNumber)?.int64Value,
                                                            sha256: e["sha256"] as? String, gitSHA1: e["git_sha1"] as? String),
                                     wantedBy: e["wanted_by"] as? [String] ?? [],
                                     downloadable: e["wan2gp_downloads"] as? Bool ?? true))
        }
        return LockFile(manifestSHA256: root["manifest_sha256"] as? String ?? "", files: files)
    }

    public func render() throws -> String {
        let entries: [[String: Any]] = files.map { f in
            var o = desiredFileJSON(f)
            o["path"] = f.path
            return o
        }
        let object: [String: Any] = ["format_version": Self.formatVersion, "manifest_sha256": manifestSHA256,
                                     "generated_by": "wgpm lock", "files": entries]
        let data = try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
        return String(decoding: data, as: UTF8.self) + "\n"
    }

    public func write(to path: String) throws {
        let tmp = path + ".tmp-\(getpid())"
        try Data(try render().utf8).write(to: URL(fileURLWithPath: tmp))
        guard rename(tmp, path) == 0 else {
            try? FileManager.default.removeItem(atPath: tmp)
            throw LockError.unreadable(path: path, reason: "cannot write: \(String(cString: strerror(errno)))")
        }
    }
}
