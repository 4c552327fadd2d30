import Foundation
import Planner

/// Several recorded machines planned against one manifest: what each needs, and what would cross
/// a shared mirror once (each download counted once, by sha256, else git sha1, else URL).
public struct FleetReport: Codable, Equatable, Sendable {
    public struct Machine: Codable, Equatable, Sendable {
        public var name: String
        public var downloads: Int
        public var downloadBytes: Int64
        public var links: Int
        public var replaces: Int
        public var conflicts: Int
        public var fits: Bool
        enum CodingKeys: String, CodingKey {
            case name, downloads, links, replaces, conflicts, fits
            case downloadBytes = "download_bytes"
        }
    }
    public var formatVersion = 1
    public var machines: [Machine]
    /// Bytes through a shared mirror: each distinct file once.
    public var upstreamBytes: Int64
    public var upstreamFiles: Int
    /// What the machines fetch together, without a mirror.
    public var totalDownloadBytes: Int64

    enum CodingKeys: String, CodingKey {
        case machines
        case formatVersion = "format_version"
        case upstreamBytes = "upstream_bytes"
        case upstreamFiles = "upstream_files"
        case totalDownloadBytes = "total_download_bytes"
    }

    /// `plans`: (machine name, its plan); sorted by name, so the output does not depend on order.
    public init(_ plans: [(name: String, plan: Plan)]) {
        var unique: [String: Int64] = [:]
        var total: Int64 = 0
        machines = plans.sorted { $0.name < $1.name }.map { name, plan in
            var bytes: Int64 = 0, count = 0
            for action in plan.actions where action.fetch?.isDownload == true {
                count += 1
                bytes = saturatingAdd(bytes, action.downloadBytes)
                let key = fleetKey(action)
                unique[key] = max(unique[key] ?? 0, action.downloadBytes)
            }
            total = saturatingAdd(total, bytes)
            let s = plan.summary
            return Machine(name: name, downloads: count, downloadBytes: bytes, links: s.count(.link),
                           replaces: s.count(.replace), conflicts: s.count(.conflict), fits: !plan.isBlocked)
        }
        upstreamFiles = unique.count
        upstreamBytes = unique.values.reduce(0, saturatingAdd)
        totalDownloadBytes = total
    }

    public var isBlocked: Bool { machines.contains { !$0.fits } }
}

/// What makes two machines' downloads the same file for a mirror.
func fleetKey(_ action: Action) -> String {
    guard let f = action.file else { return "path:" + action.path }
    if let sha = f.expected.sha256 { return "sha256:" + sha }
    if let sha1 = f.expected.gitSHA1 { return "sha1:" + sha1 }
    return "url:" + f.url
}

func saturatingAdd(_ a: Int64, _ b: Int64) -> Int64 {
    let (r, overflow) = a.addingReportingOverflow(b)
    return overflow ? .max : r
}

/// One line per machine (within 80 columns), then the totals.
public func renderFleetText(_ report: FleetReport) -> String {
    var out = ""
    for m in report.machines {
        let name = m.name.count > 28 ? String(m.name.prefix(27)) + "…" : m.name
        let status = m.fits ? "fits" : "BLOCKED"
        let line = "  \(name.padding(toLength: 28, withPad: " ", startingAt: 0)) \(String(m.downloads).leftPad(4)) to download "
            + "\(fleetBytes(m.downloadBytes).leftPad(9))  \(String(m.links).leftPad(4)) to link  \(status)"
        out += line + "\n"
    }
    out += "\n\(report.machines.count) machines: \(fleetBytes(report.totalDownloadBytes)) to download in all.\n"
        + "Through a shared mirror: \(fleetBytes(report.upstreamBytes)) (\(report.upstreamFiles) files, each once).\n"
    if report.isBlocked { out += "Blocked: a machine lacks room or has a conflict.\n" }
    return out
}

/// The pull-request preview: a table with a row per machine and the mirror total.
public func renderFleetMarkdown(_ report: FleetReport) -> String {
    var out = "**\(report.machines.count) machines**: \(fleetBytes(report.totalDownloadBytes)) to download in all, "
        + "\(fleetBytes(report.upstreamBytes)) through a shared mirror" + (report.isBlocked ? " — **Blocked**" : "") + "\n\n"
    out += "| machine | downloads | bytes | links | replaces | conflicts | fits |\n|---|---:|---:|---:|---:|---:|---|\n"
    for m in report.machines {
        let name = m.name.replacingOccurrences(of: "|", with: "\\|").replacingOccurrences(of: "\n", with: " ")
        out += "| \(name) | \(m.downloads) | \(fleetBytes(m.downloadBytes)) | \(m.links) | \(m.replaces) | \(m.conflicts) | \(m.fits ? "yes" : "**no**") |\n"
    }
    return out
}

func fleetBytes(_ n: Int64) -> String { formatBytes(n) }

extension String {
    func leftPad(_ width: Int) -> String { count >= width ? self : String(repeating: " ", count: width - count) + self }
}
