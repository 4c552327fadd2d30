/// One line of `wgpm models`: a model with the number of files it expands to by default.
public struct ModelSummary: Sendable, Codable, Equatable {
    public var id: String
    public var name: String
    public var architecture: String
    /// "single", or "high/low-noise pair" when a second transformer slot exists.
    public var slots: String
    public var files: Int
    public var bytes: Int64?
    public var visible: Bool
}

extension Catalog {
    /// The catalog's models whose id, name or architecture contains `filter`, expanded with the
    /// default settings. A model whose definition cannot be expanded (a path that climbs out,
    /// a broken reference) is left out and named in `skipped`, so one bad finetune does not hide
    /// the whole catalog.
    public func summaries(filter: String?, sizes: (([RequiredFile]) -> Int64?)?) -> (models: [ModelSummary], skipped: [String]) {
        let needle = filter?.lowercased()
        var out: [ModelSummary] = []
        var skipped: [String] = []
        for id in ids {
            let def = models[id]!
            if let needle, ![id, def.name, def.architecture].contains(where: { $0.lowercased().contains(needle) }) { continue }
            let files: [RequiredFile]
            do { files = try expand(id, settings: ModelSettings()) } catch {
                skipped.append("model \(id) is not listed: \(error)")
                continue
            }
            out.append(ModelSummary(id: id, name: def.name, architecture: def.architecture,
                                    slots: def.model["URLs2"] != nil ? "high/low-noise pair" : "single", files: files.count,
                                    bytes: sizes?(files), visible: def.visible))
        }
        return (out, skipped)
    }
}
