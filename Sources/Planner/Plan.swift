/// The basis on which local content was judged to be the desired file.
public enum MatchBasis: String, Sendable, Codable, Hashable {
    case sha256
    case gitSHA1 = "git-sha1"
    case url
    case filenameUnverified = "filename, unverified"
}

/// How the content of a path will be obtained.
public enum Fetch: Hashable, Sendable {
    case download(url: String, size: Int64?)
    case link(source: String, from: String, basis: MatchBasis, mode: LinkMode)

    public var isDownload: Bool { if case .download = self { return true } else { return false } }
}

public enum ActionKind: String, Sendable, Codable, Hashable, CaseIterable {
    case download, link, replace, remove, conflict
}

/// One change the plan proposes. `reason` is for display only: apply never parses it.
public struct Action: Hashable, Sendable {
    public var kind: ActionKind
    public var path: String
    /// How the content is obtained; nil for `remove` and `conflict`.
    public var fetch: Fetch?
    public var reason: String
    public var file: DesiredFile?

    public init(kind: ActionKind, path: String, fetch: Fetch? = nil, reason: String, file: DesiredFile? = nil) {
        self.kind = kind
        self.path = path
        self.fetch = fetch
        self.reason = reason
        self.file = file
    }

    /// Bytes this action will transfer over the network.
    public var downloadBytes: Int64 {
        if case .download(_, let size)? = fetch { return size ?? 0 }
        return 0
    }

    /// Bytes this action takes from local content instead of downloading.
    public var reusedBytes: Int64 {
        if case .link? = fetch { return file?.expected.size ?? 0 }
        return 0
    }
}

/// Bytes a plan will download onto one filesystem, against what it has free.
public struct FilesystemUsage: Hashable, Sendable {
    public var filesystem: FilesystemInfo
    public var downloadBytes: Int64
    /// What must stay free after the downloads (`min_free_gb`).
    public var reserveBytes: Int64 = 0
    /// The same rule apply enforces before it enqueues anything.
    public var fits: Bool { Self.fits(free: filesystem.freeBytes, download: downloadBytes, reserve: reserveBytes) }

    /// The one free-space rule: what stays free after the downloads is at least the reserve.
    /// Sizes come from locks and recordings, which may hold any number: no overflow here.
    public static func fits(free: Int64, download: Int64, reserve: Int64) -> Bool {
        let (left, overflow) = free.subtractingReportingOverflow(download)
        return !overflow && left >= reserve
    }
}

public struct PlanSummary: Hashable, Sendable {
    public var counts: [ActionKind: Int]
    public var unchanged: Int
    public var downloadBytes: Int64
    /// Downloads whose size is not known (non-Hub URLs without metadata).
    public var unknownSizeDownloads: Int
    public var reusedBytes: Int64
    /// Sorted by filesystem id.
    public var filesystems: [FilesystemUsage]
    /// Files wgpm placed that the manifest no longer wants (removed with `--prune`, counted
    /// either way), and the bytes they hold (links hold none).
    public var prunable = 0
    public var prunableBytes: Int64 = 0
    /// Of `downloadBytes`, what partial files hold already.
    public var partialBytes: Int64 = 0

    public func count(_ kind: ActionKind) -> Int { counts[kind] ?? 0 }
}

/// The result of planning: actions sorted by path, unchanged paths, and a summary.
public struct Plan: Hashable, Sendable {
    public var actions: [Action]
    public var unchanged: [String]
    public var summary: PlanSummary
    /// What stops apply before it starts besides conflicts and space: folders it cannot write,
    /// each a sentence that says what to do. Sorted.
    public var blockers: [String] = []

    /// True when applying the plan would change something on disk.
    /// Conflicts count: they need a person's attention, so CI must see them.
    public var hasChanges: Bool { !actions.isEmpty }

    /// True when apply would stop short: a conflict it leaves alone, or a filesystem without
    /// room for its downloads and the reserve. Not "changes to review": someone must act first.
    public var isBlocked: Bool { summary.count(.conflict) > 0 || summary.filesystems.contains { !$0.fits } || !blockers.isEmpty }
}
