import Foundation
import Planner

/// One input of a diff as the output names it.
public struct DiffSource: Codable, Equatable, Sendable {
    public var file: String
    /// `lock` or `manifest`.
    public var kind: String

    public init(file: String, kind: String) {
        self.file = file
        self.kind = kind
    }
}

/// The space check of a diff's HEAD against a recorded machine (`--inventory`).
public struct SpaceCheck: Sendable, Equatable {
    /// The recording's file name, for the heading.
    public var machine: String
    public var filesystems: [FilesystemUsage]
    /// Paths the machine has in the way of a file (a directory, an unreadable file).
    public var conflicts: [String]
    public var downloadBytes: Int64
    /// Apply would refuse the plan on that machine (the plan's one rule, `Plan.isBlocked`).
    public var blocked: Bool

    public init(machine: String, plan: Plan) {
        self.machine = machine
        filesystems = plan.summary.filesystems
        conflicts = plan.actions.filter { $0.kind == .conflict }.map(\.path)
        downloadBytes = plan.summary.downloadBytes
        blocked = plan.isBlocked
    }
}

/// `wgpm diff --json`, format_version 1 (README, "wgpm diff", lists its keys). Sorted, stable;
/// the coding keys are the format: renaming one is a new format_version.
public struct DiffDocument: Codable, Equatable, Sendable {
    public static let version = 1

    public var formatVersion: Int
    public var base: DiffSource
    public var head: DiffSource
    public var changes: Bool
    public var summary: Summary
    public var models: [Model]
    /// New files only `files:` entries want.
    public var addedFiles: [File]
    public var removedFiles: [File]
    public var movedPins: [Pin]
    /// With `--inventory`: HEAD's plan against that machine.
    public var space: Space?

    enum CodingKeys: String, CodingKey {
        case formatVersion = "format_version", base, head, changes, summary, models, addedFiles = "added_files",
             removedFiles = "removed_files", movedPins = "moved_pins", space
    }

    public init(_ d: ManifestDiff, base: DiffSource, head: DiffSource, space: SpaceCheck? = nil) {
        formatVersion = Self.version
        self.base = base
        self.head = head
        changes = d.hasChanges
        summary = Summary(d.summary)
        models = d.models.map(Model.init)
        addedFiles = d.addedExtraFiles.map(File.init)
        removedFiles = d.removedFiles.map(File.init)
        movedPins = d.movedPins.map(Pin.init)
        self.space = space.map(Space.init)
    }

    public struct Summary: Codable, Equatable, Sendable {
        public var modelsAdded, modelsRemoved, modelsChanged, filesAdded, unknownSizeFiles, filesRemoved, pinsMoved,
                   contentChanged, filesShared: Int
        public var addedBytes, freedBytes, redownloadBytes, downloadBytes: Int64

        enum CodingKeys: String, CodingKey {
            case modelsAdded = "models_added", modelsRemoved = "models_removed", modelsChanged = "models_changed",
                 filesAdded = "files_added", unknownSizeFiles = "unknown_size_files", filesRemoved = "files_removed",
                 pinsMoved = "pins_moved", contentChanged = "content_changed", filesShared = "files_shared",
                 addedBytes = "added_bytes", freedBytes = "freed_bytes", redownloadBytes = "redownload_bytes",
                 downloadBytes = "download_bytes"
        }

        init(_ s: DiffSummary) {
            modelsAdded = s.modelsAdded
            modelsRemoved = s.modelsRemoved
            modelsChanged = s.modelsChanged
            filesAdded = s.filesAdded
            unknownSizeFiles = s.unknownSizeFiles
            filesRemoved = s.filesRemoved
            pinsMoved = s.pinsMoved
            contentChanged = s.contentChanged
            filesShared = s.filesShared
            addedBytes = s.addedBytes
            freedBytes = s.freedBytes
            redownloadBytes = s.redownloadBytes
            downloadBytes = s.downloadBytes
        }
    }

    public struct Model: Codable, Equatable, Sendable {
        public var id: String
        public var change: ModelChange
        public var settings: [Setting]
        public var addedFiles: [File]
        public var reusedFiles: [File]
        public var droppedFiles: [File]
        /// Bytes of added files no other model wants; shared ones are in `added_files` with
        /// `shared_with` and counted once in the summary.
        public var ownBytes: Int64
        public var sharedBytes: Int64
        public var freedBytes: Int64

        enum CodingKeys: String, CodingKey {
            case id, change, settings, addedFiles = "added_files", reusedFiles = "reused_files", droppedFiles = "dropped_files",
                 ownBytes = "own_bytes", sharedBytes = "shared_bytes", freedBytes = "freed_bytes"
        }

        init(_ m: ModelDiff) {
            id = m.id
            change = m.change
            settings = m.settings.map { Setting(name: $0.name, base: $0.base, head: $0.head) }
            addedFiles = m.addedFiles.map(File.init)
            reusedFiles = m.reusedFiles.map(File.init)
            droppedFiles = m.droppedFiles.map(File.init)
            ownBytes = m.ownBytes
            sharedBytes = m.sharedBytes
            freedBytes = m.freedBytes
        }
    }

    public struct Setting: Codable, Equatable, Sendable {
        public var name: String
        public var base: String?
        public var head: String?
    }

    public struct File: Codable, Equatable, Sendable {
        public var path: String
        public var size: Int64?
        public var repo: String?
        public var commit: String?
        public var sharedWith: [String]

        enum CodingKeys: String, CodingKey { case path, size, repo, commit, sharedWith = "shared_with" }

        init(_ f: DiffFile) {
            path = f.path
            size = f.size
            repo = f.repo
            commit = f.commit
            sharedWith = f.sharedWith
        }
    }

    public struct Pin: Codable, Equatable, Sendable {
        public var path: String
        public var size: Int64?
        public var baseCommit, headCommit, baseHash, headHash: String?
        public var baseURL, headURL: String
        public var wantedBy: [String]
        public var contentChanged: Bool

        enum CodingKeys: String, CodingKey {
            case path, size, baseCommit = "base_commit", headCommit = "head_commit", baseHash = "base_hash",
                 headHash = "head_hash", baseURL = "base_url", headURL = "head_url", wantedBy = "wanted_by",
                 contentChanged = "content_changed"
        }

        init(_ p: PinMove) {
            path = p.path
            size = p.size
            baseCommit = p.baseCommit
            headCommit = p.headCommit
            baseHash = p.baseHash
            headHash = p.headHash
            baseURL = p.baseURL
            headURL = p.headURL
            wantedBy = p.wantedBy
            contentChanged = p.contentChanged
        }
    }

    public struct Space: Codable, Equatable, Sendable {
        public var machine: String
        public var blocked: Bool
        public var downloadBytes: Int64
        public var conflicts: [String]
        public var filesystems: [PlanDocument.FilesystemEntry]

        enum CodingKeys: String, CodingKey { case machine, blocked, downloadBytes = "download_bytes", conflicts, filesystems }

        init(_ s: SpaceCheck) {
            machine = s.machine
            blocked = s.blocked
            downloadBytes = s.downloadBytes
            conflicts = s.conflicts
            filesystems = s.filesystems.map(PlanDocument.FilesystemEntry.init)
        }
    }
}

/// "abc1234" from a commit, "unknown" without one.
func short(_ commit: String?) -> String { commit.map { String($0.prefix(7)) } ?? "unknown" }

/// The one-line totals both the text and the Markdown forms start with.
func diffHeadline(_ d: ManifestDiff) -> String {
    let s = d.summary
    guard d.hasChanges else { return "No changes: both want the same files at the same pins." }
    var parts: [String] = []
    var models: [String] = []
    if s.modelsAdded > 0 { models.append("+\(counted(s.modelsAdded, "model"))") }
    if s.modelsRemoved > 0 { models.append("-\(counted(s.modelsRemoved, "model"))") }
    if s.modelsChanged > 0 { models.append("\(s.modelsChanged) changed") }
    if !models.isEmpty { parts.append(models.joined(separator: ", ")) }
    var add = "\(counted(s.filesAdded, "file")) to add (\(formatBytes(s.addedBytes))"
    if s.unknownSizeFiles > 0 { add += " + \(s.unknownSizeFiles) of unknown size" }
    parts.append(add + ")")
    if s.filesShared > 0 { parts.append("\(counted(s.filesShared, "file")) reused from other models") }
    if s.contentChanged > 0 {
        parts.append("\(counted(s.contentChanged, "file")) with new content (\(formatBytes(s.redownloadBytes)) to download again)")
    }
    if s.pinsMoved > s.contentChanged { parts.append("\(counted(s.pinsMoved - s.contentChanged, "pin")) moved over the same bytes") }
    if s.filesRemoved > 0 { parts.append("\(counted(s.filesRemoved, "file")) unwanted (\(formatBytes(s.freedBytes)) freed by --prune)") }
    return parts.joined(separator: "; ") + "."
}

/// The human form of a diff: a line per changed model, then the files, within 80 columns
/// except for long paths.
public func renderDiffHuman(_ d: ManifestDiff, base: DiffSource, head: DiffSource, space: SpaceCheck? = nil) -> String {
    var lines = ["Diff \(base.file) -> \(head.file)"]
    for m in d.models where m.hasChanges {
        let symbol = m.change == .added ? "+" : m.change == .removed ? "-" : "~"
        lines.append("  \(symbol) \(m.id)")
        for note in modelNotes(m) { lines.append("      \(note)") }
    }
    if !d.addedExtraFiles.isEmpty {
        lines.append("  + files: entries")
        for f in d.addedExtraFiles { lines.append("      adds \(f.path)  \(f.size.map(formatBytes) ?? "size unknown")") }
    }
    if !d.removedFiles.isEmpty {
        lines.append("  No longer wanted (apply --prune removes those wgpm created):")
        for f in d.removedFiles { lines.append("    - \(f.path)  \(f.size.map(formatBytes) ?? "size unknown")") }
    }
    let content = d.movedPins.filter(\.contentChanged)
    if !content.isEmpty {
        lines.append("  New content at the same path (a machine that has it downloads it again):")
        for p in content { lines.append("    ~ \(p.path)  \(pinNote(p, arrow: "->"))") }
    }
    for g in commitMoves(d.movedPins) {
        lines.append("  Commit moved, same bytes: \(counted(g.files.count, "file")) of \(g.repo) \(short(g.base)) -> \(short(g.head))")
    }
    if lines.count > 1 { lines.append("") }
    lines += wrapped(diffHeadline(d), hanging: 2, width: 80)
    if let space { lines += spaceLines(space) }
    return lines.joined(separator: "\n") + "\n"
}

/// What a model's change consists of, one short sentence each.
func modelNotes(_ m: ModelDiff) -> [String] {
    var notes: [String] = []
    for s in m.settings { notes.append("\(s.name): \(s.base ?? "unset") -> \(s.head ?? "unset")") }
    let own = m.addedFiles.filter(\.sharedWith.isEmpty)
    let shared = m.addedFiles.filter { !$0.sharedWith.isEmpty }
    if !own.isEmpty { notes.append("adds \(counted(own.count, "file")) (\(formatBytes(m.ownBytes)))") }
    if !shared.isEmpty {
        let with = Set(shared.flatMap(\.sharedWith)).sorted().joined(separator: ", ")
        notes.append("adds \(counted(shared.count, "file")) shared with \(with) (\(formatBytes(m.sharedBytes)), counted once)")
    }
    if !m.reusedFiles.isEmpty {
        let with = Set(m.reusedFiles.flatMap(\.sharedWith)).sorted().joined(separator: ", ")
        notes.append("reuses \(counted(m.reusedFiles.count, "file")) wanted before by \(with) (no download)")
    }
    let freed = m.droppedFiles.filter(\.sharedWith.isEmpty)
    if !freed.isEmpty { notes.append("drops \(counted(freed.count, "file")) (\(formatBytes(m.freedBytes)) unwanted)") }
    let kept = m.droppedFiles.filter { !$0.sharedWith.isEmpty }
    if !kept.isEmpty {
        notes.append("no longer wants \(counted(kept.count, "file")) (still wanted by \(Set(kept.flatMap(\.sharedWith)).sorted().joined(separator: ", ")))")
    }
    if m.settings.isEmpty && !own.isEmpty && !m.droppedFiles.isEmpty && m.change == .changed {
        notes.append("(files swapped: a settings change the lock does not record?)")
    }
    return notes
}

/// Pins that moved over the same bytes, one group per repo and pair of commits: a lock refreshed
/// on the Hub moves every file of a repo whose `main` moved, and that costs nothing.
struct CommitMove {
    var repo: String
    var base: String?
    var head: String?
    var files: [PinMove]
}

func commitMoves(_ pins: [PinMove]) -> [CommitMove] {
    var groups: [String: CommitMove] = [:]
    for p in pins where !p.contentChanged {
        let repo = p.baseURL == p.headURL ? (hubRepo(p.headURL) ?? "another host") : "changed URLs"
        let key = "\(repo) \(p.baseCommit ?? "-") \(p.headCommit ?? "-")"
        groups[key, default: CommitMove(repo: repo, base: p.baseCommit, head: p.headCommit, files: [])].files.append(p)
    }
    return groups.keys.sorted().map { groups[$0]! }
}

/// `org/name` of a Hub file URL (`https://host/org/name/resolve/…`), else nil.
func hubRepo(_ url: String) -> String? {
    let parts = url.split(separator: "/", omittingEmptySubsequences: true)
    guard parts.count >= 5, let i = parts.firstIndex(of: "resolve"), i >= 4 else { return nil }
    return "\(parts[i - 2])/\(parts[i - 1])"
}

func pinNote(_ p: PinMove, arrow: String) -> String {
    var note = p.baseURL == p.headURL ? "commit \(short(p.baseCommit)) \(arrow) \(short(p.headCommit))" : "url changed"
    note += p.contentChanged ? ", new content: \(p.size.map(formatBytes) ?? "size unknown") to download again" : ", same content (no download)"
    return note
}

func spaceLines(_ s: SpaceCheck) -> [String] {
    var lines = ["On \(s.machine): \(formatBytes(s.downloadBytes)) to download" + (s.blocked ? " - BLOCKED, apply would refuse" : ", fits")]
    for fs in s.filesystems where fs.downloadBytes > 0 || !fs.fits {
        var text = "  \(fs.filesystem.mountPoint): \(formatBytes(fs.downloadBytes)) to download, \(formatBytes(fs.filesystem.freeBytes)) free"
        if fs.reserveBytes > 0 { text += ", keeps \(formatBytes(fs.reserveBytes)) free" }
        lines.append(text + (fs.fits ? "" : " - NOT ENOUGH SPACE"))
    }
    if !s.conflicts.isEmpty { lines.append("  \(counted(s.conflicts.count, "path")) in the way (run 'wgpm plan' there)") }
    return lines
}
