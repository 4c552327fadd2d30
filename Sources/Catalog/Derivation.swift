import Foundation

/// A cell where wgpm's computation and a trace disagree.
public struct TraceMismatch: Sendable, Hashable, CustomStringConvertible {
    public var model: String
    public var setting: String
    /// Paths wgpm lists that Wan2GP does not download (or from another URL).
    public var extra: [String]
    /// Paths Wan2GP downloads that wgpm does not list.
    public var missing: [String]

    public var description: String {
        var parts: [String] = []
        if !extra.isEmpty { parts.append("wgpm also lists \(extra.joined(separator: ", "))") }
        if !missing.isEmpty { parts.append("wgpm misses \(missing.joined(separator: ", "))") }
        return "\(model) [\(setting)]: " + parts.joined(separator: "; ")
    }
}

/// Turns a trace into knowledge: what Wan2GP downloads beyond the files wgpm computes from the
/// definitions themselves, grouped so that a finetune of a traced architecture is covered too.
public enum KnowledgeDerivation {
    /// `wan2gpDirectory` holds the definitions the trace was made with. The result reproduces
    /// the trace for every traced model unless `mismatches` says where it does not.
    public static func derive(trace: WanTrace, wan2gpDirectory dir: String, commitDate: String? = nil) throws
        -> (knowledge: TracedKnowledge, mismatches: [TraceMismatch]) {
        let traced = trace.models.filter { trace.errors?[$0.key] == nil }
        var byArch: [String: [String]] = [:]
        for (id, m) in traced { byArch[m.architecture, default: []].append(id) }
        for k in byArch.keys { byArch[k]!.sort() }

        var knowledge = TracedKnowledge(
            format_version: TracedKnowledge.formatVersion, wan2gp_commit: trace.wan2gp_commit,
            wangp_version: trace.wangp_version, commit_date: commitDate, fingerprint: trace.fingerprint,
            variant_rule: VariantRule.r8681e9f7.rawValue, core: [], architectures: [:], models: [:])
        for (arch, ids) in byArch {
            let dirs = ids.compactMap { traced[$0]?.lora_dir }
            let common = mostCommon(dirs, preferring: traced[arch]?.lora_dir)
            knowledge.architectures[arch] = .init(lora_dir: common, dtype: nil, support: [])
            for id in ids where traced[id]?.lora_dir != common {
                knowledge.models[id] = .init(lora_dir: traced[id]?.lora_dir, support: nil)
            }
        }

        // The variant rule (one per version) and the dtype an architecture's handler forces
        // show as the files Wan2GP picks from a list: keep the rule, and per architecture the
        // forcing, that list the fewest files Wan2GP does not (the newest rule on a tie).
        var chosen: (extras: Int, rule: VariantRule, forcing: [String: ModelSettings.DType?])?
        for rule in VariantRule.allCases.reversed() {
            var extrasByForcing: [ModelSettings.DType?: [String: Int]] = [:]
            for forcing in [nil, ModelSettings.DType.bf16, .fp16] as [ModelSettings.DType?] {
                var k = knowledge
                k.variant_rule = rule.rawValue
                for arch in k.architectures.keys { k.architectures[arch]!.dtype = forcing }
                let catalog = try Catalog.load(wan2gpDirectory: dir, support: SupportFiles(traced: k))
                var counts: [String: Int] = [:]
                for (id, m) in traced { counts[m.architecture, default: 0] += cells(catalog, id, m).reduce(0) { $0 + $1.extra.count } }
                extrasByForcing[forcing] = counts
            }
            var forcing: [String: ModelSettings.DType?] = [:]
            var extras = 0
            for arch in knowledge.architectures.keys {
                let best = [nil, ModelSettings.DType.bf16, .fp16].min { a, b in
                    (extrasByForcing[a]?[arch] ?? 0) < (extrasByForcing[b]?[arch] ?? 0)
                } ?? nil
                forcing[arch] = best
                extras += extrasByForcing[best]?[arch] ?? 0
            }
            if chosen == nil || extras < chosen!.extras { chosen = (extras, rule, forcing) }
        }
        knowledge.variant_rule = chosen!.rule.rawValue
        for (arch, dtype) in chosen!.forcing { knowledge.architectures[arch]!.dtype = dtype }

        let catalog = try Catalog.load(wan2gpDirectory: dir, support: SupportFiles(traced: knowledge))
        var residuals: [String: [Pair: Set<Int>]] = [:]
        for (id, m) in traced {
            var residual: [Pair: Set<Int>] = [:]
            // A path wgpm would not write stays out of the knowledge; `compare` reports it missing.
            for cell in cells(catalog, id, m) {
                for pair in cell.residual where knowledgePathProblem(pair.path) == nil { residual[pair, default: []].insert(cell.index) }
            }
            residuals[id] = residual
        }

        let all = Set(0..<12)
        if let first = residuals.values.first {
            let core = first.filter { pair, s in s == all && residuals.values.allSatisfy { $0[pair] == all } }.keys
            knowledge.core = entries(Dictionary(uniqueKeysWithValues: core.map { ($0, all) }))
            for id in residuals.keys { for pair in core { residuals[id]![pair] = nil } }
        }
        for (arch, ids) in byArch {
            let maps = ids.compactMap { id in residuals[id].map { (id, $0) } }
            guard !maps.isEmpty else { continue }
            // The list most of the architecture's models share; the architecture's own model wins a tie.
            var counts: [[Pair: Set<Int>]: Int] = [:]
            for (_, map) in maps { counts[map, default: 0] += 1 }
            let top = counts.values.max()!
            let chosen = maps.first { $0.0 == arch && counts[$0.1] == top }?.1 ?? maps.first { counts[$0.1] == top }!.1
            knowledge.architectures[arch]!.support = entries(chosen)
            for (id, map) in maps where map != chosen {
                knowledge.models[id, default: .init(lora_dir: nil, support: nil)].support = entries(map)
            }
        }
        let final = try Catalog.load(wan2gpDirectory: dir, support: SupportFiles(traced: knowledge))
        return (knowledge, try compare(final, with: trace))
    }

    /// Every traced model under every setting: wgpm's downloadable files against the trace's.
    public static func compare(_ catalog: Catalog, with trace: WanTrace, models only: Set<String>? = nil) throws -> [TraceMismatch] {
        var out: [TraceMismatch] = []
        for id in trace.models.keys.sorted() where trace.errors?[id] == nil && (only?.contains(id) ?? true) {
            let model = trace.models[id]!
            for index in 0..<12 {
                let want = files(of: model, at: index)
                var have: [String: String] = [:]
                if catalog.models[id] != nil {
                    for f in try catalog.expand(id, settings: ModelSettings(traceIndex: index)) where f.downloadable { have[f.path] = f.url }
                }
                let extra = have.filter { want[$0.key] != $0.value }.keys.sorted()
                let missing = want.filter { have[$0.key] != $0.value }.keys.sorted()
                if !extra.isEmpty || !missing.isEmpty {
                    out.append(TraceMismatch(model: id, setting: ModelSettings.traceOrder[index], extra: extra, missing: missing))
                }
            }
        }
        return out
    }

    struct Pair: Hashable { var path: String; var url: String }

    private struct Cell { var index: Int; var extra: [String]; var residual: [Pair] }

    private static func files(of model: WanTrace.Model, at index: Int) -> [String: String] {
        var out: [String: String] = [:]
        for (path, f) in model.files where f.settings.map({ $0.contains(index) }) ?? true { out[path] = f.url }
        return out
    }

    /// The definition part wgpm computes for one model against the trace, setting by setting.
    private static func cells(_ catalog: Catalog, _ id: String, _ model: WanTrace.Model) -> [Cell] {
        (0..<12).map { index in
            let want = files(of: model, at: index)
            var have: [String: String] = [:]
            if catalog.models[id] != nil, let expanded = try? catalog.expand(id, settings: ModelSettings(traceIndex: index)) {
                for f in expanded where f.downloadable { have[f.path] = f.url }
            }
            let extra = have.filter { want[$0.key] != $0.value }.keys.sorted()
            let residual = want.filter { have[$0.key] != $0.value }.map { Pair(path: $0.key, url: $0.value) }
            return Cell(index: index, extra: extra, residual: residual)
        }
    }

    private static func entries(_ map: [Pair: Set<Int>]) -> [TracedKnowledge.Entry] {
        map.map { pair, s in
            TracedKnowledge.Entry(path: pair.path, url: pair.url, settings: s.count == 12 ? nil : s.sorted())
        }.sorted { ($0.path, $0.url) < ($1.path, $1.url) }
    }

    private static func mostCommon(_ values: [String], preferring preferred: String?) -> String? {
        guard !values.isEmpty else { return nil }
        var counts: [String: Int] = [:]
        for v in values { counts[v, default: 0] += 1 }
        let top = counts.values.max()!
        if let preferred, counts[preferred] == top { return preferred }
        return counts.filter { $0.value == top }.keys.min()
    }
}

extension TracedKnowledge {
    /// Sorted, indented JSON: knowledge files are committed and reviewed as diffs.
    public func encoded() throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
        return try encoder.encode(self) + Data("\n".utf8)
    }
}
