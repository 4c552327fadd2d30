import Foundation
import Planner

/// Why a saved plan no longer describes the machine, or nil when it still does.
///
/// The saved plan records digests of its inputs and the observed state of every path it
/// looked at; any difference makes it stale, and the message names what changed.
public func stalenessReason(saved: [String: Any], fresh: PlanResult) -> String? {
    guard saved["format_version"] as? Int == 1 else { return "it is not a wgpm plan of format_version 1" }
    guard let fingerprint = saved["fingerprint"] as? [String: String] else {
        return "it has no fingerprint (save plans with 'wgpm plan -o FILE', not with --json)"
    }
    if fingerprint["manifest_sha256"] != fresh.fingerprint["manifest_sha256"] { return "the manifest changed" }
    if fingerprint["catalog_sha256"] != fresh.fingerprint["catalog_sha256"] { return "Wan2GP's model definitions changed" }
    if fingerprint["desired_sha256"] != fresh.fingerprint["desired_sha256"] {
        return "the files the manifest wants changed (the Hub's metadata or the lock moved)"
    }
    let before = saved["observed"] as? [String: String] ?? [:]
    for (path, now) in fresh.observed.paths.sorted(by: { $0.key < $1.key }) {
        let was = before[path] ?? "not looked at"
        if was != describe(now) { return "\(path) changed since the plan was made (was: \(was); now: \(describe(now)))" }
    }
    if fingerprint["observed_sha256"] != fresh.fingerprint["observed_sha256"] { return "the files on disk changed" }
    // The targets are as they were, but what would be done may not be (a local source vanished).
    let savedActions = Dictionary((saved["actions"] as? [[String: Any]] ?? []).compactMap { a -> (String, String)? in
        guard let path = a["path"] as? String else { return nil }
        return (path, actionSummary(kind: a["action"] as? String, fetch: a["fetch"] as? [String: Any]))
    }, uniquingKeysWith: { a, _ in a })
    for action in fresh.plan.actions {
        let now = actionSummary(action)
        let was = savedActions[action.path] ?? "nothing"
        if was != now { return "\(action.path) would now be \(now) instead of \(was)" }
    }
    if savedActions.count != fresh.plan.actions.count { return "the set of actions changed" }
    return nil
}

func actionSummary(kind: String?, fetch: [String: Any]?) -> String {
    var text = kind ?? "?"
    if let from = fetch?["from"] as? String { text += " from \(from)" }
    return text
}

func actionSummary(_ action: Action) -> String {
    var text = action.kind.rawValue
    if case .link(_, let from, _, _)? = action.fetch { text += " from \(from)" }
    return text
}
