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
        /// Each filesystem the machine downloads to (or that lacks room), by mount point.
        public var filesystems: [Filesystem]
        enum CodingKeys: String, CodingKey {
            case name, downloads, links, replaces, conflicts, fits, filesystems
            case downloadBytes = "download_bytes"
        }
    }
    /// One filesystem of a machine: what lands there, what it has free, what must stay free.
    public struct Filesystem: Codable, Equatable, Sendable {
        public var mountPoint: String
        public var downloadBytes: Int64
        public var freeBytes: Int64
        public var reserveBytes: Int64
        public var fits: Bool
        enum CodingKeys: String, CodingKey {
            case fits
            case mountPoint = "mount_point", downloadBytes = "download_bytes", freeBytes = "free_bytes", reserveBytes = "reserve_bytes"
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
            let filesystems = s.filesystems.filter { $0.downloadBytes > 0 || !$0.fits }
                .map { Filesystem(mountPoint: $0.filesystem.mountPoint, downloadBytes: $0.downloadBytes,
                                  freeBytes: $0.filesystem.freeBytes, reserveBytes: $0.reserveBytes, fits: $0.fits) }
                .sorted { $0.mountPoint < $1.mountPoint }
            return Machine(name: name, downloads: count, downloadBytes: bytes, links: s.count(.link),
                           replaces: s.count(.replace), conflicts: s.count(.conflict), fits: !plan.isBlocked,
                           filesystems: filesystems)
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
        // Names and mount points come from inventory files: shown without control characters.
        let shownName = printable(m.name)
        let name = shownName.count > 28 ? String(shownName.prefix(27)) + "…" : shownName
        let status = m.fits ? "fits" : "BLOCKED"
        let line = "  \(name.padding(toLength: 28, withPad: " ", startingAt: 0)) \(String(m.downloads).leftPad(4)) to fetch    "
            + "\(fleetBytes(m.downloadBytes).leftPad(9))  \(String(m.links).leftPad(4)) to link  \(status)"
        out += line + "\n"
        for fs in m.filesystems {
            let keeps = fs.reserveBytes > 0 ? ", keeps \(fleetBytes(fs.reserveBytes))" : ""
            let room = "\(fleetBytes(fs.downloadBytes)) to download, \(fleetBytes(fs.freeBytes)) free\(keeps)" + (fs.fits ? "" : " — NOT ENOUGH SPACE")
            out += wrapped("\(printable(fs.mountPoint)): \(room)", indent: 4, hanging: 2, width: 80).joined(separator: "\n") + "\n"
        }
        if m.conflicts > 0 { out += "    \(counted(m.conflicts, "conflict")) to resolve first\n" }
    }
    out += "\n\(counted(report.machines.count, "machine")): \(fleetBytes(report.totalDownloadBytes)) to download in all.\n"
        + "Through a shared mirror: \(fleetBytes(report.upstreamBytes)) (\(counted(report.upstreamFiles, "file")), each once).\n"
    if report.isBlocked { out += "Blocked: a machine lacks room or has a conflict.\n" }
    return out
}

/// The pull-request preview: a table with a row per machine and the mirror total.
public func renderFleetMarkdown(_ report: FleetReport) -> String {
    var out = "**\(counted(report.machines.count, "machine"))**: \(fleetBytes(report.totalDownloadBytes)) to download in all, "
        + "\(fleetBytes(report.upstreamBytes)) through a shared mirror" + (report.isBlocked ? " — **Blocked**" : "") + "\n\n"
    out += "| machine | downloads | bytes | links | replaces | conflicts | free space | fits |\n|---|---:|---:|---:|---:|---:|---|---|\n"
    for m in report.machines {
        let name = printable(m.name).replacingOccurrences(of: "|", with: "\\|").replacingOccurrences(of: "\n", with: " ")
        let space = m.filesystems.map { fs in
            "`\(printable(fs.mountPoint).replacingOccurrences(of: "|", with: "\\|").replacingOccurrences(of: "`", with: "'"))` \(fleetBytes(fs.freeBytes))"
                + (fs.fits ? "" : " (**short**)")
        }.joined(separator: "<br>")
        out += "| \(name) | \(m.downloads) | \(fleetBytes(m.downloadBytes)) | \(m.links) | \(m.replaces) | \(m.conflicts) | \(space.isEmpty ? "—" : space) | \(m.fits ? "yes" : "**no**") |\n"
    }
    return out
}

func fleetBytes(_ n: Int64) -> String { formatBytes(n) }

extension String {
    func leftPad(_ width: Int) -> String { count >= width ? self : String(repeating: " ", count: width - count) + self }
}
