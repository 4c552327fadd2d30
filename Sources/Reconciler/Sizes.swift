import Catalog
import Foundation
import HubClient

extension Reconciler {
    /// Sizes the state database already knows for these files (no network).
    public func cachedSizes(_ files: [RequiredFile]) -> [String: Int64] {
        var out: [String: Int64] = [:]
        var byRepo: [String: [(RequiredFile, HubReference)]] = [:]
        for f in files { if let ref = HubReference(url: f.url) { byRepo["\(ref.repo)@\(ref.revision)", default: []].append((f, ref)) } }
        for (_, items) in byRepo {
            let ref = items[0].1
            guard let commit = try? state.cachedCommit(repo: ref.repo, revision: ref.revision),
                  let known = try? state.cachedFiles(repo: ref.repo, commit: commit, paths: items.map(\.1.path)) else { continue }
            for (f, r) in items { if let k = known[r.path] { out[f.path] = k.size } }
        }
        return out
    }

    /// Total size when every file's size is cached, for `wgpm models`.
    public var knownSizes: ([RequiredFile]) -> Int64? {
        { files in
            let sizes = cachedSizes(files)
            return sizes.count == files.count ? sizes.values.reduce(0, +) : nil
        }
    }
}
