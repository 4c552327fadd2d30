import Foundation
import Planner
import Rendering

/// A plan saved with `wgpm plan -o FILE` and carried out with `wgpm apply FILE`: the plan's
/// JSON document plus a fingerprint of its inputs and the observed state of every path it
/// looked at. Apply plans afresh and carries out the plan only while both agree, so nothing in
/// the file is executed; it is still checked like any input, since it may come from elsewhere.
public struct SavedPlan: Sendable, Equatable {
    /// The document as written, with `fingerprint`, `observed` and `pruned` always present.
    public private(set) var document: PlanDocument

    public var fingerprint: [String: String] { document.fingerprint ?? [:] }
    public var observed: [String: String] { document.observed ?? [:] }
    /// Made with `--prune`: apply then plans with pruning too.
    public var pruned: Bool { document.pruned ?? false }
    /// The manifest the plan was made from (absolute in plans this version writes).
    public var manifest: String? { document.manifest }
    /// The config file the plan was made with, nil when it was made without one.
    public var config: String? { document.config }

    /// `document.manifest` and `config` are made absolute against `cwd`, so the plan can be
    /// applied from any folder.
    public init(_ result: PlanResult, document: PlanDocument, pruned: Bool, config: String? = nil,
                cwd: String = FileManager.default.currentDirectoryPath) {
        var document = document
        func absolute(_ path: String) -> String {
            URL(fileURLWithPath: path, relativeTo: URL(fileURLWithPath: cwd, isDirectory: true)).standardizedFileURL.path
        }
        document.manifest = document.manifest.map(absolute)
        document.config = config.map(absolute)
        document.fingerprint = result.fingerprint
        document.observed = Dictionary(uniqueKeysWithValues: result.observed.paths.map { ($0.key, describe($0.value)) })
        document.pruned = pruned
        self.document = document
    }

    static let remedy = "Make a new one with 'wgpm plan -o FILE' and review it."

    public static func load(_ path: String) throws -> SavedPlan {
        let document = try decodeVersioned(PlanDocument.self, at: path, kind: .plan, version: PlanDocument.version, remedy: remedy)
        guard document.fingerprint != nil, document.observed != nil else {
            throw FormatError(file: path, kind: .plan, reason: "it has no fingerprint (it is 'wgpm plan --json' output, not a plan saved with -o)",
                              remedy: remedy)
        }
        var problems = EntryProblems()
        for (i, a) in document.actions.enumerated() { problems.path(a.path, at: "actions[\(i)]") }
        for (i, p) in document.unchanged.enumerated() { problems.path(p, at: "unchanged[\(i)]") }
        for p in (document.observed ?? [:]).keys.sorted() { problems.path(p, at: "observed") }
        for (key, value) in [("manifest", document.manifest), ("config", document.config)] {
            if let value, !value.hasPrefix("/") || shown(value) != value {
                problems.add(key, path: value, "not an absolute path without control characters")
            }
        }
        if !problems.lines.isEmpty {
            throw FormatError(file: path, kind: .plan, reason: "it names paths outside ckpts/ and loras/", entries: problems.lines,
                              remedy: remedy)
        }
        return SavedPlan(document: document)
    }

    private init(document: PlanDocument) { self.document = document }

    public func render() throws -> String { try renderJSON(document) }

    public func write(to path: String) throws { try writeAtomically(try render(), to: path) }

    /// Why the saved plan no longer describes the machine, or nil when it still does.
    /// Any difference makes it stale, and the message names what changed.
    public func stalenessReason(fresh: PlanResult) -> String? {
        if fingerprint["manifest_content_sha256"] != fresh.fingerprint["manifest_content_sha256"] { return "the manifest changed" }
        if fingerprint["catalog_sha256"] != fresh.fingerprint["catalog_sha256"] { return "Wan2GP's model definitions changed" }
        if fingerprint["desired_sha256"] != fresh.fingerprint["desired_sha256"] {
            return "the files the manifest wants changed (the Hub's metadata or the lock moved)"
        }
        let before = observed
        for (path, now) in fresh.observed.paths.sorted(by: { $0.key < $1.key }) {
            let was = before[path] ?? "not looked at"
            if was != describe(now) { return "\(path) changed since the plan was made (was: \(was); now: \(describe(now)))" }
        }
        if fingerprint["observed_sha256"] != fresh.fingerprint["observed_sha256"] { return "the files on disk changed" }
        // The targets are as they were, but what would be done may not be (a local source vanished).
        let savedActions = Dictionary(document.actions.map { ($0.path, summary(kind: $0.action, fetch: $0.fetch)) },
                                      uniquingKeysWith: { a, _ in a })
        for action in fresh.plan.actions {
            let now = summary(kind: action.kind, fetch: action.fetch.map(PlanDocument.FetchEntry.init))
            let was = savedActions[action.path] ?? "nothing"
            if was != now { return "\(action.path) would now be \(now) instead of \(was)" }
        }
        if savedActions.count != fresh.plan.actions.count { return "the set of actions changed" }
        return nil
    }
}

private func summary(kind: ActionKind, fetch: PlanDocument.FetchEntry?) -> String {
    if case .link(_, let from, _, _)? = fetch { return "\(kind.rawValue) from \(from)" }
    return kind.rawValue
}

extension PlanResult {
    /// The plan's JSON document, with what it cost.
    public func document(manifest: String) -> PlanDocument {
        let stats: [String: Int64] = [
            "hub_requests": Int64(metadata.hubRequests),
            "paths_observed": Int64(inventory.pathsObserved),
            "files_hashed": Int64(inventory.filesHashed),
            "bytes_hashed": inventory.bytesHashed,
            "hash_cache_hits": Int64(inventory.hashCacheHits),
            "source_files": Int64(reuse.sourceFiles),
            "candidates_considered": Int64(reuse.candidatesConsidered),
            "source_files_hashed": Int64(reuse.filesHashed),
            "source_bytes_hashed": reuse.bytesHashed,
            "bytes_reused": plan.summary.reusedBytes,
        ]
        var document = PlanDocument(plan, manifest: manifest, stats: stats)
        document.wan2gp = selection?.entry
        return document
    }
}
