import Catalog
import Foundation
import HubClient
import Manifest
import Planner
import State

/// Errors of the expansion stage that are not the catalog's own.
public enum DesiredError: Error, CustomStringConvertible {
    case pathCollision(path: String, first: String, second: String)
    /// Every repo the Hub refused in one plan, each with what to do: all at once, so one
    /// run shows the whole list rather than one problem per run.
    case hubProblems([String])

    public var description: String {
        switch self {
        case .pathCollision(let path, let first, let second):
            return "\(path) would come from two different URLs: \(first) and \(second). Give the files: entry another path."
        case .hubProblems(let all):
            // Repos on one unreachable host give one line, not one each.
            var seen: Set<String> = []
            let problems = all.filter { seen.insert($0).inserted }
            if problems.count == 1 { return problems[0] }
            return "\(problems.count) problems with what the manifest asks of the Hub:\n" + problems.map { "  - \($0)" }.joined(separator: "\n")
        }
    }
}

/// Counts of what metadata lookup cost, for `--json` and tests.
public struct MetadataStats: Hashable, Sendable {
    public var hubRequests = 0
    public var cachedRepos = 0
}

/// Turns a manifest into the files it wants, each with the identity the Hub publishes for it.
public struct DesiredState: Sendable {
    public var files: [DesiredFile]
    public var warnings: [String]
    public var stats: MetadataStats
    /// The Wan2GP version the files were computed for; nil when the lock alone answered.
    public var selection: KnowledgeSelection?
}

/// Hosts whose URLs name Hub files; requests for them go to the configured endpoint.
func isHubURL(_ url: String, endpoint: String) -> Bool {
    guard let host = URLComponents(string: url)?.host?.lowercased() else { return false }
    return ["huggingface.co", "www.huggingface.co", "hf.co"].contains(host) || origin(of: url) == origin(of: endpoint)
}

extension Reconciler {
    /// Expands every manifest model and extra file, then looks up identities: the lock first,
    /// then the state cache, then the Hub. With `locked`, any difference from the lock is an error.
    /// With a lock made from this very manifest text, the lock alone is the answer: no catalog,
    /// no network.
    public func desiredState(manifest: Manifest, catalog: Catalog?, refresh: Bool, lock: LockFile? = nil,
                             lockPath: String = "wgpm.lock", locked: Bool = false) throws -> DesiredState {
        if let lock, lock.manifestSHA256 == LockFile.digest(manifest.text), !refresh {
            return DesiredState(files: lock.files, warnings: catalog?.warnings ?? [], stats: MetadataStats(), selection: nil)
        }
        guard let catalog else { throw CatalogError.noDefaultsDirectory(config.wan2gpDirectory) }
        // Only here: with a lock that vouches for the manifest, the version's knowledge is not used.
        var warnings = catalog.warnings + [catalog.selection?.warning].compactMap { $0 }
        let expanded = try catalog.expand(manifest.models.map { ($0.id, $0.settings) })
        var files: [DesiredFile] = []
        var index: [String: Int] = [:]
        for (file, models) in expanded {
            index[file.path] = files.count
            files.append(DesiredFile(path: file.path, url: file.url, wantedBy: models, downloadable: file.downloadable))
        }
        var pinned: [String: String] = [:]
        for extra in manifest.files {
            if let i = index[extra.path] {
                guard normalizeURL(files[i].url) == normalizeURL(extra.url) else {
                    throw DesiredError.pathCollision(path: extra.path, first: files[i].url, second: extra.url)
                }
                files[i].wantedBy = (files[i].wantedBy + ["files:"]).sorted()
            } else {
                index[extra.path] = files.count
                files.append(DesiredFile(path: extra.path, url: extra.url, wantedBy: ["files:"]))
            }
            if let sha = extra.sha256 { pinned[extra.path] = sha }
        }

        var stats = MetadataStats()
        // Pinned by the lock: identity and commit come from it.
        var fromLock: Set<Int> = []
        if let lock {
            let entries = Dictionary(lock.files.map { ($0.path, $0) }, uniquingKeysWith: { a, _ in a })
            var differences: [String] = []
            for (i, f) in files.enumerated() {
                if let e = entries[f.path], normalizeURL(e.url) == normalizeURL(f.url) {
                    files[i].repo = e.repo
                    files[i].commit = e.commit
                    files[i].expected = e.expected
                    fromLock.insert(i)
                } else if let e = entries[f.path] {
                    differences.append("\(f.path): the lock has \(e.url), the manifest wants \(f.url)")
                } else {
                    differences.append("\(f.path): wanted by the manifest, not in the lock")
                }
            }
            let wanted = Set(files.map(\.path))
            for e in lock.files where !wanted.contains(e.path) {
                differences.append("\(e.path): in the lock, no longer wanted by the manifest")
            }
            if !differences.isEmpty {
                if locked { throw LockError.outOfDate(path: lockPath, differences: differences.sorted()) }
                warnings.append("\(lockPath) is out of date (\(differences.count) difference\(differences.count == 1 ? "" : "s")); files not in it are looked up on the Hub. Run 'wgpm lock'.")
            }
        }
        // Group Hub files by repo and revision so each costs one revision call and a few
        // paths-info calls, and nothing at all once cached.
        var groups: [String: (ref: HubReference, indices: [Int])] = [:]
        for (i, f) in files.enumerated() where !fromLock.contains(i) && isHubURL(f.url, endpoint: config.hubEndpoint) {
            guard let ref = HubReference(url: f.url) else { continue }
            let key = "\(ref.type.rawValue):\(ref.repo)@\(ref.revision)"
            groups[key, default: (ref, [])].indices.append(i)
        }
        var problems: [String] = []
        var stale: [String] = []
        for key in groups.keys.sorted() {
            do {
                let (ref, indices) = groups[key]!
                let commit: String
                if ref.revision.count == 40, ref.revision.allSatisfy(\.isHexDigit) {
                    commit = ref.revision.lowercased()
                } else if !refresh, let cached = try state.cachedRevision(repo: ref.repo, revision: ref.revision) {
                    commit = cached.commit
                    if context.clock() - cached.fetchedAt > 86_400 { stale.append(ref.repo) }
                } else {
                    let resolved = try hub.resolveRevision(ref)
                    commit = resolved.commit
                    stats.hubRequests += 1
                    if resolved.gated, let first = indices.compactMap({ HubReference(url: files[$0].url)?.path }).min() {
                        // Checked before the commit is cached, so the next plan asks again.
                        try hub.checkDownloadAccess(ref, commit: commit, path: first)
                        stats.hubRequests += 1
                    }
                    try state.storeCommit(repo: ref.repo, revision: ref.revision, commit: commit, at: context.clock())
                }
                let paths = indices.compactMap { HubReference(url: files[$0].url)?.path }
                var known = refresh ? [:] : try state.cachedFiles(repo: ref.repo, commit: commit, paths: paths)
                let missing = Array(Set(paths.filter { known[$0] == nil })).sorted()
                if missing.isEmpty {
                    stats.cachedRepos += 1
                } else {
                    let fetched = try hub.fileInfo(ref, commit: commit, paths: missing)
                    stats.hubRequests += 1 + (missing.count - 1) / 100
                    try state.storeFiles(repo: ref.repo, commit: commit, files: fetched)
                    for f in fetched { known[f.path] = f }
                }
                for i in indices {
                    guard let path = HubReference(url: files[i].url)?.path, let info = known[path] else { continue }
                    files[i].repo = ref.repo
                    files[i].commit = commit
                    files[i].expected = FileIdentity(size: info.size, sha256: info.sha256, gitSHA1: info.gitSHA1)
                }
            } catch let error as HubError {
                // The same for every repo: one line says it.
                if case .unreachable = error { throw error }
                if case .invalidToken = error { throw error }
                problems.append("\(error)")
            }
        }
        if !problems.isEmpty { throw DesiredError.hubProblems(problems) }
        if !stale.isEmpty {
            let names = stale.count <= 3 ? stale.joined(separator: ", ") : stale.prefix(3).joined(separator: ", ") + " and \(stale.count - 3) more"
            warnings.append("what the Hub said about \(names) is more than a day old (cached); 'wgpm plan --refresh' asks again for the newest commit")
        }
        for (path, sha) in pinned {
            let i = index[path]!
            if let published = files[i].expected.sha256, published != sha {
                warnings.append("\(path): the manifest pins sha256 \(sha.prefix(12))… but the Hub now publishes \(published.prefix(12))…; the manifest's value is used, so a download will fail verification until one of them changes")
            }
            files[i].expected.sha256 = sha
        }
        return DesiredState(files: files.sorted { $0.path < $1.path }, warnings: warnings.sorted(), stats: stats,
                            selection: catalog.selection)
    }
}
