/// One side of `wgpm diff`: the files a manifest (or its lock) wants, and its models.
public struct DiffSide: Sendable {
    public var files: [DesiredFile]
    public var models: [ModelRecord]

    /// `models` nil: the side does not record its models (a lock), so they are the wanters of its files.
    public init(files: [DesiredFile], models: [ModelRecord]? = nil) {
        self.files = files.sorted { $0.path < $1.path }
        if let models {
            self.models = models.sorted { $0.id < $1.id }
        } else {
            let ids = Set(files.flatMap(\.wantedBy)).subtracting([filesEntry])
            self.models = ids.sorted().map { ModelRecord(id: $0) }
        }
    }
}

/// The wanter name of a manifest's `files:` entries.
public let filesEntry = "files:"

/// A model of a manifest with its settings as text (`transformer_quantization` → `bf16`), as
/// `wgpm diff` compares them and a lock records them.
public struct ModelRecord: Hashable, Sendable, Codable {
    public var id: String
    /// Setting name (`transformer_quantization`) → value; nil when unknown (a lock).
    public var settings: [String: String]?

    public init(id: String, settings: [String: String]? = nil) {
        self.id = id
        self.settings = settings
    }
}

/// How a model differs between the two sides.
public enum ModelChange: String, Sendable, Codable, Hashable {
    case added, removed, changed, unchanged
}

/// A file named in a diff.
public struct DiffFile: Hashable, Sendable {
    public var path: String
    public var size: Int64?
    public var repo: String?
    public var commit: String?
    /// The other models (or `files:`) that want it on the side it is counted on, sorted.
    public var sharedWith: [String]

    public init(_ f: DesiredFile, except model: String? = nil) {
        path = f.path
        size = f.expected.size
        repo = f.repo
        commit = f.commit
        sharedWith = f.wantedBy.filter { $0 != model }
    }
}

/// A setting whose value differs between the sides.
public struct SettingChange: Hashable, Sendable {
    public var name: String
    public var base: String?
    public var head: String?
}

/// What one model's change costs.
public struct ModelDiff: Hashable, Sendable {
    public var id: String
    public var change: ModelChange
    public var settings: [SettingChange]
    /// Files new to HEAD that this model wants; a file another model wants too is in each
    /// model's list (with `sharedWith`) but counted once in the summary.
    public var addedFiles: [DiffFile]
    /// Files BASE already wanted (for another model) that this model now wants too: no download.
    /// `sharedWith` names who wanted each in BASE.
    public var reusedFiles: [DiffFile]
    /// Files this model wanted in BASE and does not in HEAD; `sharedWith` names who still wants one.
    public var droppedFiles: [DiffFile]

    /// Bytes of the added files no other model wants.
    public var ownBytes: Int64 { sum(addedFiles.filter(\.sharedWith.isEmpty)) }
    /// Bytes of the added files another model wants too (counted once, in the summary).
    public var sharedBytes: Int64 { sum(addedFiles.filter { !$0.sharedWith.isEmpty }) }
    /// Bytes of the dropped files nobody wants any more.
    public var freedBytes: Int64 { sum(droppedFiles.filter(\.sharedWith.isEmpty)) }
    public var hasChanges: Bool { change != .unchanged }
}

/// A path both sides want whose pinned origin or content differs.
public struct PinMove: Hashable, Sendable {
    public var path: String
    public var size: Int64?
    public var baseCommit: String?
    public var headCommit: String?
    /// sha256, or the git blob sha1 for small files; nil when unknown.
    public var baseHash: String?
    public var headHash: String?
    public var baseURL: String
    public var headURL: String
    public var wantedBy: [String]
    /// True when the expected bytes differ (hash or size): a machine that has the file downloads
    /// it again. A commit that moved over the same bytes costs nothing.
    public var contentChanged: Bool
}

/// Totals of a diff; a file is counted once however many models want it.
public struct DiffSummary: Hashable, Sendable {
    public var modelsAdded = 0
    public var modelsRemoved = 0
    public var modelsChanged = 0
    public var filesAdded = 0
    public var addedBytes: Int64 = 0
    /// Added files whose size is not known (non-Hub URLs).
    public var unknownSizeFiles = 0
    public var filesRemoved = 0
    /// What `apply --prune` frees at most: only files wgpm itself created are removed.
    public var freedBytes: Int64 = 0
    public var pinsMoved = 0
    public var contentChanged = 0
    public var redownloadBytes: Int64 = 0
    /// Added files that were already wanted by another model (no download).
    public var filesShared = 0

    /// What a machine that had BASE downloads to have HEAD.
    public var downloadBytes: Int64 { addedBytes &+ redownloadBytes }
}

/// The difference between two manifests or locks: models, files, pins and settings.
public struct ManifestDiff: Hashable, Sendable {
    /// Every model of either side, sorted by id; unchanged ones included so a table can show them.
    public var models: [ModelDiff]
    /// Files HEAD adds that only `files:` entries want.
    public var addedExtraFiles: [DiffFile]
    /// Files BASE wants and HEAD does not, sorted by path.
    public var removedFiles: [DiffFile]
    public var movedPins: [PinMove]
    public var summary: DiffSummary

    public var hasChanges: Bool {
        models.contains(where: \.hasChanges) || !addedExtraFiles.isEmpty || !removedFiles.isEmpty || !movedPins.isEmpty
    }
}

/// Compares two sides. Pure and deterministic: the same inputs give equal output, sorted.
public func diffManifests(base: DiffSide, head: DiffSide) -> ManifestDiff {
    let baseFiles = Dictionary(base.files.map { ($0.path, $0) }, uniquingKeysWith: { a, _ in a })
    let headFiles = Dictionary(head.files.map { ($0.path, $0) }, uniquingKeysWith: { a, _ in a })
    let baseModels = Dictionary(base.models.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
    let headModels = Dictionary(head.models.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
    var summary = DiffSummary()

    func files(of model: String, in side: [DesiredFile]) -> [DesiredFile] { side.filter { $0.wantedBy.contains(model) } }

    var models: [ModelDiff] = []
    for id in Set(baseModels.keys).union(headModels.keys).sorted() {
        let before = Set(files(of: id, in: base.files).map(\.path))
        let after = files(of: id, in: head.files)
        var added: [DiffFile] = []
        var reused: [DiffFile] = []
        for f in after where !before.contains(f.path) {
            if let had = baseFiles[f.path] {
                // Who wanted it before is what makes it free now.
                var r = DiffFile(f, except: id)
                r.sharedWith = had.wantedBy.filter { $0 != id }
                reused.append(r)
            } else {
                added.append(DiffFile(f, except: id))
            }
        }
        let afterPaths = Set(after.map(\.path))
        let dropped = files(of: id, in: base.files).filter { !afterPaths.contains($0.path) }.map { f -> DiffFile in
            var d = DiffFile(f, except: id)
            d.sharedWith = headFiles[f.path]?.wantedBy ?? []
            return d
        }
        var settings: [SettingChange] = []
        if let b = baseModels[id]?.settings, let h = headModels[id]?.settings {
            for name in Set(b.keys).union(h.keys).sorted() where b[name] != h[name] {
                settings.append(SettingChange(name: name, base: b[name], head: h[name]))
            }
        }
        let change: ModelChange
        switch (baseModels[id], headModels[id]) {
        case (nil, _): change = .added; summary.modelsAdded += 1
        case (_, nil): change = .removed; summary.modelsRemoved += 1
        default:
            change = settings.isEmpty && added.isEmpty && reused.isEmpty && dropped.isEmpty ? .unchanged : .changed
            if change == .changed { summary.modelsChanged += 1 }
        }
        models.append(ModelDiff(id: id, change: change, settings: settings, addedFiles: added, reusedFiles: reused, droppedFiles: dropped))
    }

    var addedExtra: [DiffFile] = []
    for f in head.files where baseFiles[f.path] == nil {
        summary.filesAdded += 1
        if let size = f.expected.size { summary.addedBytes &+= size } else { summary.unknownSizeFiles += 1 }
        if f.wantedBy.allSatisfy({ $0 == filesEntry }) { addedExtra.append(DiffFile(f)) }
    }
    summary.filesShared = Set(models.flatMap(\.reusedFiles).map(\.path)).count
    let removed = base.files.filter { headFiles[$0.path] == nil }.map { DiffFile($0) }
    summary.filesRemoved = removed.count
    summary.freedBytes = removed.reduce(0) { $0 &+ ($1.size ?? 0) }

    var moves: [PinMove] = []
    for f in head.files {
        guard let b = baseFiles[f.path] else { continue }
        let contentChanged = b.expected.sha256 != f.expected.sha256 || b.expected.gitSHA1 != f.expected.gitSHA1
            || b.expected.size != f.expected.size
        guard contentChanged || b.commit != f.commit || b.url != f.url else { continue }
        moves.append(PinMove(path: f.path, size: f.expected.size, baseCommit: b.commit, headCommit: f.commit,
                             baseHash: b.expected.sha256 ?? b.expected.gitSHA1, headHash: f.expected.sha256 ?? f.expected.gitSHA1,
                             baseURL: b.url, headURL: f.url, wantedBy: f.wantedBy, contentChanged: contentChanged))
        if contentChanged {
            summary.contentChanged += 1
            summary.redownloadBytes &+= f.expected.size ?? 0
        }
    }
    summary.pinsMoved = moves.count
    return ManifestDiff(models: models, addedExtraFiles: addedExtra, removedFiles: removed, movedPins: moves, summary: summary)
}

private func sum(_ files: [DiffFile]) -> Int64 { files.reduce(0) { $0 &+ ($1.size ?? 0) } }
