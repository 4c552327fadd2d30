import Foundation

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
    return nil
}
