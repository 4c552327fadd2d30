import Foundation
import Inventory
import Planner
import State

/// What the index knows and what a plan's resolution cost.
public struct ReuseStats: Hashable, Sendable {
    public var sourceFiles = 0
    public var candidatesConsidered = 0
    public var filesHashed = 0
    public var bytesHashed: Int64 = 0

    public init(sourceFiles: Int = 0) { self.sourceFiles = sourceFiles }
}

/// The hash index of local sources, kept in the state database: every file of every source with
/// its stamp and, once known, its sha256 and git blob sha1. Hashes are computed lazily — only
/// for files whose size equals a wanted file's size, and only the digest that wanted file is
/// known by — and cached by device, inode, size and mtime.
public struct HashIndex: Sendable {
    public var sources: [any LocalSource]
    public var state: StateDatabase
    public var fileSystem: FileSystem
    public var workers: Int

    public init(sources: [any LocalSource], state: StateDatabase, fileSystem: FileSystem = LocalFileSystem(), workers: Int = 0) {
        self.sources = sources
        self.state = state
        self.fileSystem = fileSystem
        self.workers = workers > 0 ? workers : ProcessInfo.processInfo.activeProcessorCount
    }

    /// Scans every source and records what it found; hashes already known for an unchanged file
    /// (same stamp) are kept.
    public func sync(warn: (String) -> Void) throws -> [SourceFile] {
        var all: [SourceFile] = []
        for source in sources {
            var files = try source.scan(fileSystem: fileSystem, warn: warn)
            let known = try state.indexedFiles(source: source.name)
            for i in files.indices {
                if let old = known[files[i].path], old.stamp == files[i].stamp {
                    files[i].sha256 = files[i].sha256 ?? old.sha256
                    files[i].gitSHA1 = files[i].gitSHA1 ?? old.gitSHA1
                } else if files[i].sha256 == nil || files[i].gitSHA1 == nil, let cached = try state.cachedHash(files[i].stamp) {
                    files[i].sha256 = files[i].sha256 ?? cached.sha256
                    files[i].gitSHA1 = files[i].gitSHA1 ?? cached.gitSHA1
                }
            }
            try state.replaceIndex(source: source.name, files: files.map(Self.record))
            all += files
        }
        return all
    }

    static func record(_ f: SourceFile) -> IndexedFile {
        IndexedFile(path: f.path, source: f.source, stamp: f.stamp, sha256: f.sha256, gitSHA1: f.gitSHA1, urls: f.urls)
    }

    /// Candidates for each desired path that needs content, in SPEC §3.3 terms: files whose stated
    /// or computed hash matches, files from the same URL, and same-name same-size files. Files whose
    /// size equals the expected size are hashed (in parallel) when their sha256 is unknown. A file
    /// that cannot be read is left out with a warning: it could not be linked from anyway.
    public func candidates(for wanted: [DesiredFile], files: [SourceFile],
                           progress: (@Sendable (Int, Int) -> Void)? = nil,
                           warn: (String) -> Void = { _ in }) throws -> ([String: [ReuseCandidate]], ReuseStats) {
        var stats = ReuseStats(sourceFiles: files.count)
        // A source file that failed verification at apply is not offered again while unchanged.
        let bad = try state.badSources()
        var files = files.filter { bad[$0.path] != $0.stamp }
        let bySize = Dictionary(grouping: files.indices, by: { files[$0].size })
        // Hash what could match and is not yet known: the sha256 of a file the size of a wanted
        // LFS file, the git blob sha1 of one the size of a wanted small file (the Hub names
        // small non-LFS files by it), so a plain folder supplies tokenizers and configs too.
        var toHash: [Int: (sha256: Bool, gitSHA1: Bool)] = [:]
        for want in wanted {
            guard let size = want.expected.size else { continue }
            let sha = want.expected.sha256 != nil
            let sha1 = !sha && want.expected.gitSHA1 != nil
            guard sha || sha1 else { continue }
            for i in bySize[size] ?? [] where (sha && files[i].sha256 == nil) || (sha1 && files[i].gitSHA1 == nil) {
                let need = toHash[i] ?? (false, false)
                toHash[i] = (need.sha256 || (sha && files[i].sha256 == nil), need.gitSHA1 || (sha1 && files[i].gitSHA1 == nil))
            }
        }
        let jobs = toHash.keys.sorted()
        let requests = jobs.map { HashRequest(path: files[$0].path, sha256: toHash[$0]!.sha256, gitSHA1: toHash[$0]!.gitSHA1) }
        let results = hashFiles(requests, fileSystem: fileSystem, workers: workers, progress: progress)
        var unreadable: Set<Int> = []
        for (i, result) in zip(jobs, results) {
            guard case .success(let digests) = result else {
                if case .failure(let error) = result {
                    warn("\(files[i].source): \(unreadableReason(error)); skipped")
                }
                unreadable.insert(i)
                continue
            }
            files[i].sha256 = digests.sha256 ?? files[i].sha256
            files[i].gitSHA1 = digests.gitSHA1 ?? files[i].gitSHA1
            stats.filesHashed += 1
            stats.bytesHashed += files[i].size
            try state.storeHash(files[i].stamp, sha256: digests.sha256, gitSHA1: digests.gitSHA1)
            try state.updateIndexedHashes(path: files[i].path, sha256: digests.sha256, gitSHA1: digests.gitSHA1)
        }
        // Look-ups by hash, URL and name, so each wanted file costs a few dictionary reads rather
        // than a pass over every indexed file.
        var bySHA: [String: [Int]] = [:], bySHA1: [String: [Int]] = [:], byURL: [String: [Int]] = [:], byName: [String: [Int]] = [:]
        for i in files.indices {
            if let h = files[i].sha256 { bySHA[h, default: []].append(i) }
            if let h = files[i].gitSHA1 { bySHA1[h, default: []].append(i) }
            for u in files[i].urls { byURL[u, default: []].append(i) }
            byName[(files[i].path as NSString).lastPathComponent, default: []].append(i)
        }
        var out: [String: [ReuseCandidate]] = [:]
        for want in wanted {
            let url = normalizeURL(want.url)
            let name = (want.path as NSString).lastPathComponent
            var hits = want.expected.sha256.map { bySHA[$0] ?? [] } ?? []
            hits += want.expected.gitSHA1.map { bySHA1[$0] ?? [] } ?? []
            hits += byURL[url] ?? []
            hits += byName[name] ?? []
            var seen: Set<Int> = []
            var list: [ReuseCandidate] = []
            for i in hits.sorted() where !unreadable.contains(i) && seen.insert(i).inserted {
                let f = files[i]
                guard want.expected.size == nil || f.size == want.expected.size else { continue }
                let urlHit = f.urls.contains(url)
                list.append(ReuseCandidate(source: f.source, path: f.path,
                                           content: FileContent(size: f.size, sha256: f.sha256, gitSHA1: f.gitSHA1),
                                           sourceURL: urlHit ? url : f.urls.first, filesystemID: "dev:\(f.stamp.device)"))
            }
            stats.candidatesConsidered += list.count
            if !list.isEmpty { out[want.path] = list }
        }
        return (out, stats)
    }

    /// SHA-256 of each file over `workers` threads; a failure for a file that vanished or is unreadable.
    func hashAll(_ paths: [String], progress: (@Sendable (Int, Int) -> Void)?) -> [Result<String, Error>] {
        hashFiles(paths.map { HashRequest(path: $0, sha256: true, gitSHA1: false) }, fileSystem: fileSystem,
                  workers: workers, progress: progress).map { $0.map { $0.sha256 ?? "" } }
    }

    func unreadableReason(_ error: Error) -> String {
        (error as? HashError).map { "cannot read \($0.path): \($0.reason.prefix(1).lowercased() + $0.reason.dropFirst())" } ?? "\(error)"
    }

    /// Hashes every indexed file whose sha256 is unknown (`wgpm index update`); a file that
    /// cannot be read stays pending, with a warning.
    public func hashPending(progress: (@Sendable (Int, Int) -> Void)? = nil,
                            warn: (String) -> Void = { _ in }) throws -> ReuseStats {
        var stats = ReuseStats()
        let pending = try state.indexedFilesAll().filter { $0.sha256 == nil }
        let results = hashAll(pending.map(\.path), progress: progress)
        for (f, result) in zip(pending, results) {
            guard case .success(let sha) = result else {
                if case .failure(let error) = result { warn("\(f.source): \(unreadableReason(error)); skipped") }
                continue
            }
            stats.filesHashed += 1
            stats.bytesHashed += f.stamp.size
            try state.storeHash(f.stamp, sha256: sha, gitSHA1: nil)
            try state.updateIndexedHash(path: f.path, sha256: sha)
        }
        return stats
    }
}
