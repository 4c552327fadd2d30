import Catalog
import Rendering

extension KnowledgeSelection {
    /// The selection as the JSON formats report it.
    public var entry: Wan2GPEntry {
        Wan2GPEntry(commit: version.commit, wangpVersion: version.wangpVersion, fingerprint: version.fingerprint,
                    knowledgeKind: kind.rawValue, knowledge: knowledge, knowledgeWangpVersion: knowledgeVersion, warning: warning)
    }
}

/// `wgpm models --json`, format_version 1: the catalog's summaries as they are.
public struct ModelsDocument: Codable, Equatable, Sendable {
    public static let version = 1
    public var formatVersion = Self.version
    public var wan2gp: Wan2GPEntry?
    public var models: [ModelSummary]

    enum CodingKeys: String, CodingKey { case formatVersion = "format_version", wan2gp, models }

    public init(wan2gp: Wan2GPEntry?, models: [ModelSummary]) {
        self.wan2gp = wan2gp
        self.models = models
    }
}
