import Foundation
import Inventory
import Planner
import State

/// A render machine's ckpts/ and loras/ as `wgpm inventory --json` records them, so that CI can
/// preview a manifest change against that machine (`wgpm plan --inventory FILE`).
public struct RecordedInventory: Sendable {
    public static let formatVersion = 1
    public var paths: [String: Observation]
    /// Free space per managed root (`ckpts`, `loras`).
    public var filesystems: [String: FilesystemInfo]

    public init(paths: [String: Observation], filesystems: [String: FilesystemInfo]) {
        self.paths = paths
        self.filesystems = filesystems
    }

    /// The observed state of the desired paths according to the recording; nothing on disk is read.
    public func observed(for desired: [DesiredFile]) -> ObservedState {
        var state = ObservedState()
        for f in desired {
            state.paths[f.path] = paths[f.path] ?? .missing
            state.filesystemOf[f.path] = filesystems[f.path.hasPrefix("loras/") ? "loras" : "ckpts"]
        }
        return state
    }

    public static func load(_ path: String) throws -> RecordedInventory {
        guard let data = FileManager.default.contents(atPath: path),
              let root = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
              root["format_version"] as? Int == formatVersion else {
            throw LockError.unreadable(path: path, reason: "not a wgpm inventory of format_version \(formatVersion)")
        }
        var paths: [String: Observation] = [:]
        for e in root["entries"] as? [[String: Any]] ?? [] {
            guard let p = e["path"] as? String else { continue }
            let content = (e["size"] as? NSNumber).map {
                FileContent(size: $0.int64Value, sha256: e["sha256"] as? String, gitSHA1: e["git_sha1"] as? String)
            }
            switch e["kind"] as? String {
            case "file": paths[p] = content.map { .file($0) } ?? .missing
            case "symlink": paths[p] = .symlink(target: e["target"] as? String ?? "?", content: content)
            case "directory": paths[p] = .directory
            case "unreadable": paths[p] = .unreadable(reason: e["reason"] as? String ?? "unknown reason")
            default: paths[p] = .other
            }
        }
        var filesystems: [String: FilesystemInfo] = [:]
        for (root, v) in root["filesystems"] as? [String: [String: Any]] ?? [:] {
            filesystems[root] = FilesystemInfo(id: v["id"] as? String ?? root, mountPoint: v["mount_point"] as? String ?? "?",
                                               freeBytes: (v["free_bytes"] as? NSNumber)?.int64Value ?? 0)
        }
        return RecordedInventory(paths: paths, filesystems: filesystems)
    }

    public func jsonObject() -> [String: Any] {
        var entries: [[String: Any]] = []
        for (path, obs) in paths.sorted(by: { $0.key < $1.key }) {
            var o: [String: Any] = ["path": path]
            func put(_ c: FileContent?) {
                guard let c else { return }
                o["size"] = c.size
                if let s = c.sha256 { o["sha256"] = s }
                if let s = c.gitSHA1 { o["git_sha1"] = s }
            }
            switch obs {
            case .file(let c): o["kind"] = "file"; put(c)
            case .symlink(let t, let c): o["kind"] = "symlink"; o["target"] = t; put(c)
            case .directory: o["kind"] = "directory"
            case .other: o["kind"] = "other"
            case .unreadable(let reason): o["kind"] = "unreadable"; o["reason"] = reason
            case .missing: continue
            }
            entries.append(o)
        }
        var fs: [String: Any] = [:]
        for (root, f) in filesystems { fs[root] = ["id": f.id, "mount_point": f.mountPoint, "free_bytes": f.freeBytes] }
        return ["format_version": Self.formatVersion, "entries": entries, "filesystems": fs]
    }
}

extension Reconciler {
    /// Records every file under ckpts/ and loras/ with its size and hashes (from the hash cache,
    /// computed once when missing). Partial downloads and wgpm's temporary entries are left out.
    public func recordInventory() throws -> RecordedInventory {
        var relPaths: [String] = []
        for (prefix, root) in [("ckpts", config.ckptsDirectory), ("loras", config.lorasDirectory)] {
            guard let walker = FileManager.default.enumerator(atPath: root) else { continue }
            while let rel = walker.nextObject() as? String {
                if rel.hasPrefix(".wgpm-partial") || (rel as NSString).lastPathComponent.hasPrefix(".wgpm-tmp") { continue }
                let kind = context.fileSystem.lstat(root + "/" + rel)?.kind
                if kind == .directory { continue }
                relPaths.append("\(prefix)/\(rel)")
            }
        }
        // Asking for a sha256 and a git sha1 of unknown size makes the inventory hash everything.
        let desired = relPaths.map { p -> DesiredFile in
            let size = context.fileSystem.stat(mapper.absolute(p))?.size
            let small = (size ?? 0) < 10 << 20
            return DesiredFile(path: p, url: "", expected: FileIdentity(size: size, sha256: "*", gitSHA1: small ? "*" : nil))
        }
        let inventory = Inventory(fileSystem: context.fileSystem, state: state, mapper: mapper, workers: config.parallelHashWorkers)
        let (observed, _) = try inventory.observe(desired, hashBoth: true)
        var filesystems: [String: FilesystemInfo] = [:]
        for (name, root) in [("ckpts", config.ckptsDirectory), ("loras", config.lorasDirectory)] {
            if let fs = context.fileSystem.filesystem(of: root) {
                filesystems[name] = FilesystemInfo(id: fs.id, mountPoint: fs.mountPoint, freeBytes: fs.freeBytes)
            }
        }
        return RecordedInventory(paths: observed.paths, filesystems: filesystems)
    }
}
