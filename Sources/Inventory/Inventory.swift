import Foundation
import Synchronization
import Planner
import State

/// Maps the manifest's `ckpts/…` and `loras/…` paths to the configured directories.
public struct PathMapper: Sendable {
    public var ckpts: String
    public var loras: String

    public init(ckpts: String, loras: String) {
        self.ckpts = ckpts
        self.loras = loras
    }

    /// The directory of a managed root: `ckpts` and `loras` as configured; a root-level LoRA
    /// folder of an older Wan2GP (`legacyLoraRoots`) beside the LoRA folder, where that Wan2GP,
    /// run from its own directory, has it.
    public func directory(ofRoot name: String) -> String? {
        switch name {
        case "ckpts": ckpts
        case "loras": loras
        case _ where legacyLoraRoots.contains(name): (loras as NSString).deletingLastPathComponent + "/" + name
        default: nil
        }
    }

    /// Every managed root with its directory: ckpts, loras, then the root-level LoRA folders of
    /// older Wan2GP versions, sorted (whether or not they exist).
    public var roots: [(name: String, directory: String)] {
        (["ckpts", "loras"] + legacyLoraRoots.sorted()).compactMap { name in directory(ofRoot: name).map { (name, $0) } }
    }

    /// The managed root a relative path is below: its name and its directory.
    public func root(of relative: String) -> (name: String, directory: String)? {
        guard let name = pathSegments(relative).first, isBelow(relative, root: name),
              let directory = directory(ofRoot: name) else { return nil }
        return (name, directory)
    }

    /// Compared on scalars, as the kernel splits paths (not on Swift's Characters, which join a
    /// `/` with a following combining mark). A path below no root maps to itself, and the
    /// confinement check refuses it.
    public func absolute(_ relative: String) -> String {
        guard let (name, root) = root(of: relative) else { return relative }
        return root + "/" + String(String.UnicodeScalarView(relative.unicodeScalars.dropFirst(name.unicodeScalars.count + 1)))
    }
}

/// Statistics of one observation, for `--json` and for tests that count hashing.
public struct InventoryStats: Hashable, Sendable {
    public var pathsObserved = 0
    public var filesHashed = 0
    public var bytesHashed: Int64 = 0
    public var hashCacheHits = 0

    public init() {}
}

/// Observes every target path: missing, file, symlink (dangling or not), directory in the way,
/// or a file that cannot be read.
///
/// Content is hashed only when its size already equals the expected size and a hash is known to
/// compare with; hashes are cached by device, inode, size and mtime, so an unchanged file is
/// hashed once ever. A file with no hash to compare with has only its first
/// `ContentFormat.prefixLength` bytes read, to check they fit its format.
public struct Inventory: Sendable {
    public var fileSystem: FileSystem
    public var state: StateDatabase?
    public var mapper: PathMapper
    public var workers: Int

    public init(fileSystem: FileSystem = LocalFileSystem(), state: StateDatabase?, mapper: PathMapper, workers: Int = 0) {
        self.fileSystem = fileSystem
        self.state = state
        self.mapper = mapper
        self.workers = workers > 0 ? workers : ProcessInfo.processInfo.activeProcessorCount
    }

    struct HashJob {
        var index: Int
        var path: String
        /// The target path (`ckpts/…`) the content was observed at.
        var relative: String
        var stamp: FileStamp
        var sha256: Bool
        var gitSHA1: Bool
    }

    /// `hashBoth`: compute the git sha1 as well as the sha256 when both are asked for (inventories).
    public func observe(_ desired: [DesiredFile], extraPaths: [String] = [], hashBoth: Bool = false) throws -> (ObservedState, InventoryStats) {
        var stats = InventoryStats()
        var observations: [String: Observation] = [:]
        var jobs: [HashJob] = []
        var pending: [(String, FileStatus, String?)] = []  // relative path, status of content, link target
        let expected = Dictionary(desired.map { ($0.path, $0.expected) }, uniquingKeysWith: { a, _ in a })
        for rel in Set(desired.map(\.path) + extraPaths).sorted() {
            stats.pathsObserved += 1
            let abs = mapper.absolute(rel)
            guard let st = fileSystem.lstat(abs) else { observations[rel] = .missing; continue }
            switch st.kind {
            case .directory: observations[rel] = .directory
            case .other: observations[rel] = .other
            case .symlink:
                let target = fileSystem.readlink(abs) ?? "?"
                if let followed = fileSystem.stat(abs), followed.kind == .file {
                    pending.append((rel, followed, target))
                } else {
                    observations[rel] = .symlink(target: target, content: nil)
                }
            case .file:
                pending.append((rel, st, nil))
            }
        }
        // Decide what must be hashed, using the cache first.
        var contents: [String: FileContent] = [:]
        var unreadable: [String: String] = [:]  // relative path -> why it could not be read
        for (rel, st, target) in pending {
            var content = FileContent(size: st.size)
            let want = expected[rel]
            let sizeMatches = want?.size == nil || want?.size == st.size
            let needSHA = sizeMatches && want?.sha256 != nil
            let needSHA1 = sizeMatches && want?.gitSHA1 != nil && (want?.sha256 == nil || hashBoth)
            let stamp = FileStamp(device: st.device, inode: st.inode, size: st.size, mtimeNanoseconds: st.mtimeNanoseconds)
            if needSHA || needSHA1 {
                let cached = try state?.cachedHash(stamp)
                content.sha256 = cached?.sha256
                content.gitSHA1 = cached?.gitSHA1
                let missingSHA = needSHA && content.sha256 == nil
                let missingSHA1 = needSHA1 && content.gitSHA1 == nil
                if missingSHA || missingSHA1 {
                    jobs.append(HashJob(index: jobs.count, path: mapper.absolute(rel), relative: rel, stamp: stamp,
                                        sha256: missingSHA, gitSHA1: missingSHA1))
                } else {
                    stats.hashCacheHits += 1
                }
            } else if let want, !want.isVerifiable, sizeMatches {
                // No hash to compare with: the first bytes at least tell an HTML page or an error
                // body from the model format the name promises. Only such files pay for this read.
                do {
                    let prefix = try fileSystem.readPrefix(mapper.absolute(rel), count: ContentFormat.prefixLength)
                    content.formatProblem = ContentFormat.problem(prefix: prefix, name: (rel as NSString).lastPathComponent)
                } catch {
                    unreadable[rel] = readFailure(error, target: target)
                }
            }
            contents[rel] = content
        }
        let results = hashAll(jobs)
        var resultByPath: [String: (sha256: String?, gitSHA1: String?)] = [:]
        let targetOf = Dictionary(pending.map { ($0.0, $0.2) }, uniquingKeysWith: { a, _ in a })
        for (job, result) in zip(jobs, results) {
            switch result {
            case .success(let hashes):
                stats.filesHashed += 1
                stats.bytesHashed += job.stamp.size
                try state?.storeHash(job.stamp, sha256: hashes.sha256, gitSHA1: hashes.gitSHA1)
                resultByPath[job.relative] = hashes
            case .failure(let error):
                // One file that cannot be read is that path's problem, not the whole plan's.
                unreadable[job.relative] = readFailure(error, target: targetOf[job.relative] ?? nil)
            }
        }
        for (rel, _, target) in pending {
            if let why = unreadable[rel] {
                // It may have gone between the look and the read: then it is simply missing.
                observations[rel] = fileSystem.lstat(mapper.absolute(rel)) == nil ? .missing : .unreadable(reason: why)
                continue
            }
            var content = contents[rel]!
            if let r = resultByPath[rel] {
                content.sha256 = r.sha256 ?? content.sha256
                content.gitSHA1 = r.gitSHA1 ?? content.gitSHA1
            }
            observations[rel] = target.map { .symlink(target: $0, content: content) } ?? .file(content)
        }
        var filesystems: [String: FilesystemInfo] = [:]
        var byRoot: [String: FilesystemInfo] = [:]
        for rel in desired.map(\.path) {
            let root = mapper.root(of: rel)?.directory ?? mapper.ckpts
            if byRoot[root] == nil, let fs = fileSystem.filesystem(of: root) {
                byRoot[root] = FilesystemInfo(id: fs.id, mountPoint: fs.mountPoint, freeBytes: fs.freeBytes)
            }
            filesystems[rel] = byRoot[root]
        }
        return (ObservedState(paths: observations, filesystemOf: filesystems), stats)
    }

    /// Hashes files over `workers` threads; results in job order.
    func hashAll(_ jobs: [HashJob]) -> [Result<(sha256: String?, gitSHA1: String?), Error>] {
        hashFiles(jobs.map { HashRequest(path: $0.path, sha256: $0.sha256, gitSHA1: $0.gitSHA1) },
                  fileSystem: fileSystem, workers: workers)
    }

    /// The system's reason in the planner's words ("permission denied"), naming a link's target,
    /// since that is the file whose owner or mode needs fixing.
    func readFailure(_ error: Error, target: String?) -> String {
        let text = (error as? HashError)?.reason ?? "\(error)"
        let reason = text.prefix(1).lowercased() + text.dropFirst()
        return target.map { "\(reason) (the link points to \($0))" } ?? reason
    }
}

/// One file to hash and which digests to compute.
public struct HashRequest: Sendable {
    public var path: String
    public var sha256: Bool
    public var gitSHA1: Bool

    public init(path: String, sha256: Bool, gitSHA1: Bool) {
        self.path = path
        self.sha256 = sha256
        self.gitSHA1 = gitSHA1
    }
}

/// Hashes files over `workers` threads, each taking the next file as it finishes one; results in
/// request order. `progress` is called with (done, total) after each file.
public func hashFiles(_ requests: [HashRequest], fileSystem fs: FileSystem, workers: Int,
                      progress: (@Sendable (Int, Int) -> Void)? = nil) -> [Result<(sha256: String?, gitSHA1: String?), Error>] {
    guard !requests.isEmpty else { return [] }
    let box = ResultBox(count: requests.count)
    DispatchQueue.concurrentPerform(iterations: min(max(1, workers), requests.count)) { _ in
        while let i = box.claim() {
            let r = requests[i]
            let done = box.set(i, Result { try fs.hash(r.path, sha256: r.sha256, gitSHA1: r.gitSHA1) })
            progress?(done, requests.count)
        }
    }
    return box.values.map { $0! }
}

/// Per-index results written from several threads; each index is written once.
final class ResultBox: Sendable {
    typealias Hashes = Result<(sha256: String?, gitSHA1: String?), Error>
    private let state: Mutex<(values: [Hashes?], next: Int, done: Int)>
    init(count: Int) { state = Mutex((Array(repeating: nil, count: count), 0, 0)) }

    var values: [Hashes?] { state.withLock { $0.values } }

    /// The next index nobody has taken yet.
    func claim() -> Int? {
        state.withLock { s in
            guard s.next < s.values.count else { return nil }
            s.next += 1
            return s.next - 1
        }
    }

    /// Stores a result; returns how many are done.
    func set(_ i: Int, _ r: Hashes) -> Int {
        state.withLock { s in
            s.values[i] = r
            s.done += 1
            return s.done
        }
    }
}
