/// What a file must be: the identity the Hub (or the lock, or the manifest) publishes for it.
///
/// LFS files are known by sha256, small git files by their git blob sha1. A file with neither
/// (a non-Hub URL without a `sha256:` in the manifest) can only be checked by size, or not at all.
public struct FileIdentity: Hashable, Sendable, Codable {
    public var size: Int64?
    public var sha256: String?
    public var gitSHA1: String?

    public init(size: Int64? = nil, sha256: String? = nil, gitSHA1: String? = nil) {
        self.size = size
        self.sha256 = sha256
        self.gitSHA1 = gitSHA1
    }

    /// True when a hash is known, so content can be verified rather than assumed.
    public var isVerifiable: Bool { sha256 != nil || gitSHA1 != nil }
}

/// One file the manifest wants, after catalog expansion and metadata lookup.
public struct DesiredFile: Hashable, Sendable, Codable {
    /// Relative to the Wan2GP directory: `ckpts/…` or `loras/…`.
    public var path: String
    public var url: String
    /// `org/name` for Hub URLs.
    public var repo: String?
    /// The commit the metadata was resolved at, when known.
    public var commit: String?
    public var expected: FileIdentity
    /// Model ids (or `files:`) that want this file, sorted; for display only.
    public var wantedBy: [String]
    /// False for files a definition needs but Wan2GP never downloads (`source:` in a definition).
    public var downloadable: Bool

    public init(path: String, url: String, repo: String? = nil, commit: String? = nil,
                expected: FileIdentity = FileIdentity(), wantedBy: [String] = [], downloadable: Bool = true) {
        self.path = path
        self.url = url
        self.repo = repo
        self.commit = commit
        self.expected = expected
        self.wantedBy = wantedBy
        self.downloadable = downloadable
    }
}

/// Content facts about a regular file, as far as they were computed.
public struct FileContent: Hashable, Sendable, Codable {
    public var size: Int64
    public var sha256: String?
    public var gitSHA1: String?
    /// Why the file's first bytes cannot start a file of its name's format (`ContentFormat`),
    /// e.g. "it is an HTML page, not a .safetensors file". Looked at only when no hash is known
    /// to compare with, so it is nil for every file the Hub publishes a hash for.
    public var formatProblem: String?

    public init(size: Int64, sha256: String? = nil, gitSHA1: String? = nil, formatProblem: String? = nil) {
        self.size = size
        self.sha256 = sha256
        self.gitSHA1 = gitSHA1
        self.formatProblem = formatProblem
    }
}

/// What is at a target path now.
public enum Observation: Hashable, Sendable {
    case missing
    case file(FileContent)
    /// A symlink; `content` is what it resolves to, nil when it dangles or points at a non-file.
    case symlink(target: String, content: FileContent?)
    case directory
    /// A socket, fifo, device: nothing wgpm will touch.
    case other
    /// A file (or a link's target) that exists but could not be read to check its content, e.g.
    /// root-owned with mode 600 after a `sudo` run; `reason` is the system's, lower-case
    /// ("permission denied"). wgpm cannot tell whether it is right, so it leaves it alone.
    case unreadable(reason: String)
}

/// A place elsewhere on the machine that holds content that may match a desired file.
public struct ReuseCandidate: Hashable, Sendable, Codable {
    /// Name of the source, e.g. `invokeai`, `hf_cache:/root/.cache/huggingface/hub`.
    public var source: String
    /// Absolute path of the file.
    public var path: String
    public var content: FileContent
    /// The URL this content came from, when the source records it (InvokeAI `source`).
    public var sourceURL: String?
    /// The filesystem holding the file (`FilesystemInfo.id` form), to know whether a hardlink can work.
    public var filesystemID: String?

    public init(source: String, path: String, content: FileContent, sourceURL: String? = nil, filesystemID: String? = nil) {
        self.source = source
        self.path = path
        self.content = content
        self.sourceURL = sourceURL
        self.filesystemID = filesystemID
    }
}

/// A filesystem that holds one or more target paths.
public struct FilesystemInfo: Hashable, Sendable, Codable {
    public var id: String
    public var mountPoint: String
    public var freeBytes: Int64

    public init(id: String, mountPoint: String, freeBytes: Int64) {
        self.id = id
        self.mountPoint = mountPoint
        self.freeBytes = freeBytes
    }
}

/// Everything the planner is allowed to know about the machine.
public struct ObservedState: Sendable {
    public var paths: [String: Observation]
    /// Candidates per desired path, from local sources (empty when no source is configured).
    public var candidates: [String: [ReuseCandidate]]
    /// Paths that wgpm itself created earlier (for `--prune`).
    public var managedPaths: Set<String>
    /// Filesystem of each target path.
    public var filesystemOf: [String: FilesystemInfo]
    /// Bytes a desired path's partial download already holds (a rerun does not fetch them).
    public var partialBytes: [String: Int64] = [:]
    /// Folders (relative, e.g. `ckpts` or `ckpts/umt5-xxl`) this user cannot write in, each
    /// with why: apply would fail on every file below them.
    public var unwritableFolders: [String: String] = [:]

    public init(paths: [String: Observation] = [:], candidates: [String: [ReuseCandidate]] = [:],
                managedPaths: Set<String> = [], filesystemOf: [String: FilesystemInfo] = [:]) {
        self.paths = paths
        self.candidates = candidates
        self.managedPaths = managedPaths
        self.filesystemOf = filesystemOf
    }
}

public enum LinkMode: String, Sendable, Codable, CaseIterable {
    case symlink, hardlink, copy
}

public struct PlanOptions: Sendable {
    public var prune: Bool
    public var linkMode: LinkMode
    /// Bytes each filesystem must keep free after the downloads (`min_free_gb`); apply refuses
    /// a plan that would go below it, so the summary says so first.
    public var reserveBytes: Int64

    public init(prune: Bool = false, linkMode: LinkMode = .symlink, reserveBytes: Int64 = 0) {
        self.prune = prune
        self.linkMode = linkMode
        self.reserveBytes = reserveBytes
    }
}
