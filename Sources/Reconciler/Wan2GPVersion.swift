import Catalog
import Planner
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

/// The human form of `wgpm models`: a header and aligned columns (id, files, size, name) within
/// `width`. Ids are never cut (they are what a person types); the name column takes the room
/// left, cut at its end, with the architecture when it differs from the id, "pair" for a
/// high/low-noise pair and "hidden" for a model Wan2GP does not list.
public func renderModels(_ entries: [ModelSummary], width: Int = 80) -> String {
    guard !entries.isEmpty else { return "" }
    let idWidth = min(max(2, entries.map(\.id.count).max() ?? 2), 30)
    let sizes = entries.map { $0.bytes.map(formatBytes) ?? "" }
    let sizeWidth = max(4, sizes.map(\.count).max() ?? 0)
    let filesWidth = max(5, entries.map { String($0.files).count }.max() ?? 0)
    func pad(_ text: String, _ n: Int, right: Bool = false) -> String {
        text.count >= n ? text : right ? String(repeating: " ", count: n - text.count) + text : text + String(repeating: " ", count: n - text.count)
    }
    // Sizes are known once a plan has asked the Hub; without any, the column is left out.
    let showSizes = sizes.contains { !$0.isEmpty }
    func sizeCell(_ text: String) -> String { showSizes ? "  " + pad(text, sizeWidth, right: true) : "" }
    var lines = ["  " + pad("ID", idWidth) + "  " + pad("FILES", filesWidth, right: true) + sizeCell("SIZE") + "  NAME"]
    for (e, size) in zip(entries, sizes) {
        var notes: [String] = []
        if e.architecture != e.id { notes.append(e.architecture) }
        if e.slots != "single" { notes.append("pair") }
        if !e.visible { notes.append("hidden") }
        let name = e.name + (notes.isEmpty ? "" : " [\(notes.joined(separator: ", "))]")
        let lead = "  " + pad(e.id, idWidth) + "  " + pad(String(e.files), filesWidth, right: true) + sizeCell(size) + "  "
        let room = max(12, width - lead.count)
        lines.append(lead + (name.count > room ? String(name.prefix(room - 1)) + "…" : name))
    }
    return lines.joined(separator: "\n") + "\n"
}
