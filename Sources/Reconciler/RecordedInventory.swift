import Foundation
import Inventory
import Planner
import Rendering
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
            let root = pathSegments(f.path).first ?? "ckpts"
            state.filesystemOf[f.path] = filesystems[root] ?? filesystems[root == "ckpts" ? "ckpts" : "loras"]
        }
        return state
    }

    static let remedy = "Record it again with 'wgpm inventory --json -o FILE' on that machine."

    /// Reads a recording made on another machine; every entry is checked before any is used.
    public static func load(_ path: String) throws -> RecordedInventory {
        let document = try decodeVersioned(Document.self, at: path, kind: .inventory, version: formatVersion, remedy: remedy)
        var problems = EntryProblems()
        var paths: [String: Observation] = [:]
        for (i, e) in document.entries.enumerated() {
            let entry = "entries[\(i)]"
            problems.path(e.path, at: entry)
            if paths[e.path] != nil { problems.add(entry, path: e.path, "listed twice") }
            if let h = e.sha256, !isHex(h, count: 64) { problems.add(entry, path: e.path, "sha256 must be 64 lowercase hexadecimal characters") }
            if let h = e.git_sha1, !isHex(h, count: 40) { problems.add(entry, path: e.path, "git_sha1 must be 40 lowercase hexadecimal characters") }
            if let n = e.size, n < 0 { problems.add(entry, path: e.path, "size must not be negative") }
            let content = e.size.map { FileContent(size: $0, sha256: e.sha256, gitSHA1: e.git_sha1) }
            switch e.kind {
            case .file:
                guard let content else { problems.add(entry, path: e.path, "a file needs its size"); continue }
                paths[e.path] = .file(content)
            case .symlink:
                guard let target = e.target else { problems.add(entry, path: e.path, "a symlink needs its target"); continue }
                paths[e.path] = .symlink(target: target, content: content)
            case .directory: paths[e.path] = .directory
            case .other: paths[e.path] = .other
            case .unreadable: paths[e.path] = .unreadable(reason: e.reason ?? "unknown reason")
            }
        }
        if !problems.lines.isEmpty {
            let n = problems.lines.count
            throw FormatError(file: path, kind: .inventory, reason: n == 1 ? "1 entry is not acceptable" : "\(n) entries are not acceptable",
                              entries: problems.lines, remedy: remedy)
        }
        let filesystems = document.filesystems.mapValues {
            FilesystemInfo(id: $0.id, mountPoint: $0.mount_point, freeBytes: $0.free_bytes)
        }
        return RecordedInventory(paths: paths, filesystems: filesystems)
    }

    /// The recording as written: sorted by path, sorted keys, one key per line.
    public func render() throws -> String {
        var entries: [Entry] = []
        for (path, obs) in paths.sorted(by: { $0.key < $1.key }) {
            var e = Entry(path: path, kind: .other)
            func put(_ c: FileContent?) {
                e.size = c?.size
                e.sha256 = c?.sha256
                e.git_sha1 = c?.gitSHA1
            }
            switch obs {
            case .file(let c): e.kind = .file; put(c)
            case .symlink(let t, let c): e.kind = .symlink; e.target = t; put(c)
            case .directory: e.kind = .directory
            case .other: e.kind = .other
            case .unreadable(let reason): e.kind = .unreadable; e.reason = reason
            case .missing: continue
            }
            entries.append(e)
        }
        let fs = filesystems.mapValues { Filesystem(id: $0.id, mount_point: $0.mountPoint, free_bytes: $0.freeBytes) }
        return try renderJSON(Document(entries: entries, filesystems: fs))
    }

    public func write(to path: String) throws { try writeAtomically(try render(), to: path) }

    /// The recording's JSON, format_version 1. Key names are the format: renaming one is a new version.
    struct Document: Codable {
        var format_version = RecordedInventory.formatVersion
        var entries: [Entry]
        /// Keyed by managed root: `ckpts`, `loras`.
        var filesystems: [String: Filesystem]
    }

    struct Entry: Codable {
        enum Kind: String, Codable { case file, symlink, directory, other, unreadable }
        var path: String
        var kind: Kind
        var size: Int64?
        var sha256: String?
        var git_sha1: String?
        var target: String?
        /// Why the file could not be read on the recording machine (kind `unreadable`).
        var reason: String?
    }

    struct Filesystem: Codable {
        var id: String
        var mount_point: String
        var free_bytes: Int64
    }
}

extension Reconciler {
    /// Records every file under ckpts/ and loras/ with its size and hashes (from the hash cache,
    /// computed once when missing). Partial downloads and wgpm's temporary entries are left out.
    public func recordInventory() throws -> RecordedInventory {
        var relPaths: [String] = []
        for (prefix, root) in recordedRoots() {
            guard let walker = FileManager.default.enumerator(atPath: root) else { continue }
            while let rel = walker.nextObject() as? String {
                if rel.hasPrefix(".wgpm-partial") || (rel as NSString).lastPathComponent.hasPrefix(".wgpm-tmp") { continue }
                let kind = context.fileSystem.lstat(root + "/" + rel)?.kind
                if kind == .directory { continue }
                // A name no desired path can have (a newline, say) is nothing a plan needs, and a
                // recording holding it would be refused when read back.
                if confinementProblem("\(prefix)/\(rel)") != nil { continue }
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
        for (name, root) in recordedRoots() {
            if let fs = context.fileSystem.filesystem(of: root) {
                filesystems[name] = FilesystemInfo(id: fs.id, mountPoint: fs.mountPoint, freeBytes: fs.freeBytes)
            }
        }
        return RecordedInventory(paths: observed.paths, filesystems: filesystems)
    }

    /// ckpts/, loras/ and those of an older Wan2GP's root-level LoRA folders that exist.
    private func recordedRoots() -> [(name: String, directory: String)] {
        mapper.roots.filter { !legacyLoraRoots.contains($0.name) || context.fileSystem.lstat($0.directory)?.kind == .directory }
    }
}
