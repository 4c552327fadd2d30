import Foundation
import Planner

/// How text output may be decorated.
public struct TerminalStyle: Sendable {
    public var color: Bool
    public init(color: Bool) { self.color = color }

    /// Colour only on a terminal, and never when `NO_COLOR` is set (any value).
    public static func detect(isTerminal: Bool, environment: [String: String]) -> TerminalStyle {
        TerminalStyle(color: isTerminal && environment["NO_COLOR"] == nil && environment["TERM"] != "dumb")
    }

    func paint(_ text: String, _ code: String) -> String { color ? "\u{1B}[\(code)m\(text)\u{1B}[0m" : text }
}

/// Decimal units, as disks and the Hub's web pages report sizes.
public func formatBytes(_ bytes: Int64) -> String {
    let units = ["B", "KB", "MB", "GB", "TB"]
    var value = Double(bytes)
    var unit = 0
    while value >= 1000, unit < units.count - 1 { value /= 1000; unit += 1 }
    return unit == 0 ? "\(bytes) B" : String(format: "%.1f %@", value, units[unit])
}

/// The human form of a plan (SPEC §3).
public func renderHuman(_ plan: Plan, style: TerminalStyle, verbose: Bool = false) -> String {
    var lines: [String] = []
    let width = min(max(plan.actions.map(\.path.count).max() ?? 0, 20), 90)
    func pad(_ s: String) -> String { s.count >= width ? s : s + String(repeating: " ", count: width - s.count) }
    for action in plan.actions {
        let (symbol, color) = switch action.kind {
        case .download: ("+", "32")
        case .link: ("+", "36")
        case .replace: ("~", "33")
        case .remove: ("-", "31")
        case .conflict: ("!", "1;31")
        }
        let label = style.paint("\(symbol) \(action.kind.rawValue.padding(toLength: 9, withPad: " ", startingAt: 0))", color)
        var line = "  \(label) \(pad(action.path))"
        switch (action.kind, action.fetch) {
        case (.download, .download(_, let size)?):
            line += "  \(size.map(formatBytes) ?? "size unknown")" + origin(action.file)
            if action.file?.downloadable == false { line += "  (Wan2GP expects it in place; not its own download)" }
        case (.link, .link(_, let from, let basis, let mode)?):
            line += "  ->  \(from)  (\(basis.rawValue)\(mode == .symlink ? "" : ", \(mode.rawValue)"))"
        case (.replace, _):
            line += "  (\(action.reason))"
            if case .download(_, let size)? = action.fetch { line += "  \(size.map(formatBytes) ?? "")" + origin(action.file) }
        default:
            line += "  (\(action.reason))"
        }
        lines.append(line)
    }
    if verbose {
        for path in plan.unchanged { lines.append("    unchanged \(path)") }
    }
    if !lines.isEmpty { lines.append("") }
    let s = plan.summary
    var summary = "Plan: \(s.count(.download)) to download (\(formatBytes(s.downloadBytes))"
    if s.unknownSizeDownloads > 0 { summary += " + \(s.unknownSizeDownloads) of unknown size" }
    summary += "), \(s.count(.link)) to link (\(formatBytes(s.reusedBytes)) reused), \(s.count(.replace)) to replace, "
    summary += "\(s.count(.remove)) to remove, \(s.unchanged) unchanged."
    if s.count(.conflict) > 0 {
        summary += s.count(.conflict) == 1 ? " 1 conflict needs attention." : " \(s.count(.conflict)) conflicts need attention."
    }
    if !plan.hasChanges { summary = "No changes. \(s.unchanged) files are already as the manifest wants." }
    lines.append(summary)
    for fs in s.filesystems where fs.downloadBytes > 0 {
        let text = "  \(fs.filesystem.mountPoint): \(formatBytes(fs.downloadBytes)) to download, \(formatBytes(fs.filesystem.freeBytes)) free"
        let short = fs.reserveBytes > 0 ? " — NOT ENOUGH SPACE (min_free_gb keeps \(formatBytes(fs.reserveBytes)) free)" : " — NOT ENOUGH SPACE"
        lines.append(fs.fits ? text : style.paint(text + short, "1;31"))
    }
    return lines.joined(separator: "\n") + "\n"
}

private func origin(_ file: DesiredFile?) -> String {
    guard let file, let repo = file.repo else { return "" }
    return "  \(repo)" + (file.commit.map { "@\($0.prefix(7))" } ?? "")
}

/// A desired file's URL, origin, identity and wanters, as plans and lock files write them.
public func desiredFileJSON(_ f: DesiredFile) -> [String: Any] {
    var o: [String: Any] = ["url": f.url, "wanted_by": f.wantedBy]
    if let r = f.repo { o["repo"] = r }
    if let c = f.commit { o["commit"] = c }
    if let s = f.expected.size { o["size"] = s }
    if let h = f.expected.sha256 { o["sha256"] = h }
    if let h = f.expected.gitSHA1 { o["git_sha1"] = h }
    if !f.downloadable { o["wan2gp_downloads"] = false }
    return o
}

/// The machine-readable plan: versioned, sorted by path, stable across runs.
public func planJSONObject(_ plan: Plan, extra: [String: Any] = [:]) -> [String: Any] {
    var actions: [[String: Any]] = []
    for a in plan.actions {
        var o: [String: Any] = ["action": a.kind.rawValue, "path": a.path, "reason": a.reason]
        if let f = a.file { o.merge(desiredFileJSON(f)) { a, _ in a } }
        switch a.fetch {
        case .download(let url, let size)?:
            o["fetch"] = ["kind": "download", "url": url, "size": size as Any]
        case .link(let source, let from, let basis, let mode)?:
            o["fetch"] = ["kind": "link", "source": source, "from": from, "basis": basis.rawValue, "mode": mode.rawValue]
        case nil: break
        }
        actions.append(o)
    }
    let s = plan.summary
    var counts: [String: Int] = [:]
    for kind in ActionKind.allCases { counts[kind.rawValue] = s.count(kind) }
    counts["unchanged"] = s.unchanged
    var object: [String: Any] = [
        "format_version": 1,
        "changes": plan.hasChanges,
        "actions": actions,
        "unchanged": plan.unchanged,
        "summary": [
            "counts": counts,
            "download_bytes": s.downloadBytes,
            "unknown_size_downloads": s.unknownSizeDownloads,
            "reused_bytes": s.reusedBytes,
            "filesystems": s.filesystems.map {
                ["id": $0.filesystem.id, "mount_point": $0.filesystem.mountPoint, "free_bytes": $0.filesystem.freeBytes,
                 "download_bytes": $0.downloadBytes, "reserve_bytes": $0.reserveBytes, "fits": $0.fits] as [String: Any]
            },
        ] as [String: Any],
    ]
    for (k, v) in extra { object[k] = v }
    return object
}

/// Serializes with sorted keys so equal plans give equal bytes.
public func renderJSON(_ object: [String: Any]) throws -> String {
    let data = try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
    return String(decoding: data, as: UTF8.self) + "\n"
}
