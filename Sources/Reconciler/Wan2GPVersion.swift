import Catalog
import Rendering

extension KnowledgeSelection {
    /// The selection as the JSON formats report it.
    public var entry: Wan2GPEntry {
        Wan2GPEntry(commit: version.commit, wangpVersion: version.wangpVersion, fingerprint: version.fingerprint,
                    knowledgeKind: kind.rawValue, knowledge: knowledge, knowledgeWangpVersion: knowledgeVersion, warning: warning)
    }
}
