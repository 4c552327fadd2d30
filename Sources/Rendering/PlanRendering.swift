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

/// The human form of a plan (SPEC §3), its rows within `width` columns where the paths allow:
/// path and details on one line when they fit (aligned when every row fits so), otherwise the
/// details on the next line under the path. Paths are never shortened: they are what a person
/// acts on.
///
/// `partials`: for downloads whose partial file already holds bytes (path → bytes, the
/// observed state's), what is there; the row and the summary say how much is fetched already.
public func renderHuman(_ plan: Plan, style: TerminalStyle, verbose: Bool = false, width: Int = 80,
                        partials: [String: Int64] = [:]) -> String {
    var lines: [String] = []
    let rows = plan.actions.map { action -> (label: String, path: String, detail: String) in
        let (symbol, color) = switch action.kind {
        case .download: ("+", "32")
        case .link: ("+", "36")
        case .replace: ("~", "33")
        case .remove: ("-", "31")
        case .conflict: ("!", "1;31")
        }
        let label = style.paint("\(symbol) \(action.kind.rawValue.padding(toLength: 9, withPad: " ", startingAt: 0))", color)
        var detail: String
        switch (action.kind, action.fetch) {
        case (.download, .download(_, let size)?):
            detail = (size.map(formatBytes) ?? "size unknown") + origin(action.file)
            if let held = partials[action.path], held > 0 { detail += "  (\(formatBytes(held)) already in a partial file)" }
            if action.file?.downloadable == false { detail += "  (Wan2GP expects it in place; not its own download)" }
        case (.link, .link(_, let from, let basis, let mode)?):
            detail = "->  \(from)  (\(basis.rawValue)\(mode == .symlink ? "" : ", \(mode.rawValue)"))"
        case (.replace, _):
            detail = "(\(action.reason))"
            if case .download(_, let size)? = action.fetch { detail += "  \(size.map(formatBytes) ?? "")" + origin(action.file) }
        default:
            detail = "(\(action.reason))"
        }
        return (label, action.path, detail)
    }
    // "  + download  " is 14 columns; the label's colour codes take none.
    let lead = 14
    let longestPath = rows.map(\.path.count).max() ?? 0
    let aligned = rows.allSatisfy { lead + longestPath + 2 + $0.detail.count <= width }
    for row in rows {
        let head = "  \(row.label) \(row.path)"
        if aligned {
            lines.append(head + String(repeating: " ", count: longestPath - row.path.count) + "  " + row.detail)
        } else if lead + row.path.count + 2 + row.detail.count <= width {
            lines.append(head + "  " + row.detail)
        } else {
            lines.append(head)
            lines.append(contentsOf: wrapped(row.detail, indent: lead, width: width))
        }
    }
    if verbose {
        for path in plan.unchanged { lines.append("    unchanged \(path)") }
    }
    if !lines.isEmpty { lines.append("") }
    let s = plan.summary
    // Replacements fetch too: their bytes are said with them, not under "to download".
    let replaceBytes = plan.actions.reduce(Int64(0)) { sum, a in
        guard a.kind == .replace, case .download(_, let size)? = a.fetch else { return sum }
        return sum + (size ?? 0)
    }
    var summary = "Plan: \(s.count(.download)) to download (\(formatBytes(max(0, s.downloadBytes - replaceBytes)))"
    if s.partialBytes > 0 { summary += ", \(formatBytes(s.partialBytes)) of it already fetched" }
    if s.unknownSizeDownloads > 0 { summary += " + \(s.unknownSizeDownloads) of unknown size" }
    summary += "), \(s.count(.link)) to link (\(formatBytes(s.reusedBytes)) reused), \(s.count(.replace)) to replace"
        + (replaceBytes > 0 ? " (\(formatBytes(replaceBytes)) to fetch), " : ", ")
    summary += "\(s.count(.remove)) to remove" + (s.count(.remove) > 0 && s.prunableBytes > 0 ? " (\(formatBytes(s.prunableBytes)) freed)" : "")
    summary += ", \(s.unchanged) unchanged."
    if s.count(.conflict) > 0 {
        summary += s.count(.conflict) == 1 ? " 1 conflict needs attention." : " \(s.count(.conflict)) conflicts need attention."
    }
    if !plan.hasChanges {
        summary = s.unchanged == 0 ? "No changes. The manifest wants no files: add model ids under 'models:' ('wgpm models' lists them)."
            : "No changes. " + (s.unchanged == 1 ? "1 file is" : "\(s.unchanged) files are") + " already as the manifest wants."
    }
    if s.count(.remove) == 0 && s.prunable > 0 {
        summary += " \(counted(s.prunable, "file")) wgpm placed " + (s.prunable == 1 ? "is" : "are") + " no longer wanted"
            + (s.prunableBytes > 0 ? " (\(formatBytes(s.prunableBytes)))" : "") + "; 'wgpm plan --prune' shows their removal."
    }
    lines.append(contentsOf: wrapped(summary, indent: 0, width: width))
    for fs in s.filesystems where fs.downloadBytes > 0 {
        let text = "\(fs.filesystem.mountPoint): \(formatBytes(fs.downloadBytes)) to download, \(formatBytes(fs.filesystem.freeBytes)) free"
        let short = fs.reserveBytes > 0 ? " — NOT ENOUGH SPACE (min_free_gb keeps \(formatBytes(fs.reserveBytes)) free)" : " — NOT ENOUGH SPACE"
        let shown = wrapped(fs.fits ? text : text + short, indent: 2, width: width)
        lines.append(contentsOf: fs.fits ? shown : shown.map { style.paint($0, "1;31") })
    }
    for blocker in plan.blockers {
        lines.append(contentsOf: wrapped("BLOCKED: " + blocker, indent: 2, hanging: 4, width: width).map { style.paint($0, "1;31") })
    }
    return lines.joined(separator: "\n") + "\n"
}

/// `text` in lines of at most `width` columns, broken at spaces: the first after `indent`
/// spaces, the rest after `indent + hanging`. A word longer than the room (a long path) gets a
/// line of its own; runs of spaces inside a line are kept.
public func wrapped(_ text: String, indent: Int = 0, hanging: Int = 0, width: Int) -> [String] {
    var lines: [String] = []
    var current = ""
    var room = max(20, width - indent)
    for word in keepingUnitsWithNumbers(text.split(separator: " ", omittingEmptySubsequences: false)) {
        if current.isEmpty {
            current = String(word)
        } else if current.count + 1 + word.count <= room {
            current += " " + word
        } else {
            lines.append(trimmedEnd(current))
            current = String(word)
            room = max(20, width - indent - hanging)
        }
    }
    if !current.isEmpty { lines.append(trimmedEnd(current)) }
    return lines.enumerated().map { String(repeating: " ", count: indent + ($0.offset == 0 ? 0 : hanging)) + $0.element }
}

/// "154.1 KB" stays on one line: a unit is joined to the number before it.
private func keepingUnitsWithNumbers(_ words: [Substring]) -> [Substring] {
    let units: Set<String> = ["B", "KB", "MB", "GB", "TB", "B/s", "KB/s", "MB/s", "GB/s", "s", "min", "h", "files", "file"]
    var out: [Substring] = []
    for word in words {
        let bare = word.trimmingCharacters(in: CharacterSet(charactersIn: ",;:.)"))
        if let last = out.last, units.contains(bare), !last.isEmpty, Double(last.trimmingCharacters(in: CharacterSet(charactersIn: "("))) != nil {
            out[out.count - 1] = Substring(last + " " + word)
        } else {
            out.append(word)
        }
    }
    return out
}

/// A break at a run of spaces leaves the run's other spaces at the end of the line.
func trimmedEnd(_ line: String) -> String {
    var line = line
    while line.hasSuffix(" ") { line.removeLast() }
    return line
}

private func origin(_ file: DesiredFile?) -> String {
    guard let file, let repo = file.repo else { return "" }
    return "  \(repo)" + (file.commit.map { "@\($0.prefix(7))" } ?? "")
}

/// The machine-readable plan, format_version 1 (docs/plan.schema.json): versioned, sorted by
/// path, stable across runs. `plan --json` prints it; a saved plan (`plan -o`) is the same
/// document with `fingerprint`, `observed` and `pruned` filled in. The coding keys are the
/// format: renaming one is a new format_version.
public struct PlanDocument: Codable, Equatable, Sendable {
    public static let version = 1

    public var formatVersion: Int
    public var changes: Bool
    public var manifest: String?
    public var actions: [ActionEntry]
    public var unchanged: [String]
    public var summary: SummaryEntry
    /// What the plan cost (Hub requests, bytes hashed …); for people and CI, never compared.
    public var stats: [String: Int64]?
    /// Saved plans only: digests of the inputs, each path's observed state, and `--prune`.
    public var fingerprint: [String: String]?
    public var observed: [String: String]?
    public var pruned: Bool?
    /// Saved plans only: the absolute path of the config file the plan was made with (absent
    /// when none was found), so `wgpm apply FILE` uses it from any folder.
    public var config: String?
    /// Which Wan2GP the desired files were computed for; absent when the lock alone was the
    /// answer (no catalog read).
    public var wan2gp: Wan2GPEntry?
    /// What stops apply before it starts besides conflicts and space (a folder it cannot
    /// write); absent when nothing does.
    public var blockers: [String]?

    enum CodingKeys: String, CodingKey {
        case formatVersion = "format_version", changes, manifest, actions, unchanged, summary, stats, fingerprint, observed, pruned,
             config, wan2gp, blockers
    }

    public init(_ plan: Plan, manifest: String? = nil, stats: [String: Int64]? = nil) {
        formatVersion = Self.version
        changes = plan.hasChanges
        self.manifest = manifest
        actions = plan.actions.map(ActionEntry.init)
        unchanged = plan.unchanged
        summary = SummaryEntry(plan.summary)
        self.stats = stats
        blockers = plan.blockers.isEmpty ? nil : plan.blockers
    }

    /// One action with the desired file's URL, origin, identity and wanters.
    public struct ActionEntry: Codable, Equatable, Sendable {
        public var action: ActionKind
        public var path: String
        public var reason: String
        public var url: String?
        public var repo: String?
        public var commit: String?
        public var size: Int64?
        public var sha256: String?
        public var gitSHA1: String?
        public var wantedBy: [String]?
        /// Written only when false: a file the definition needs that Wan2GP never downloads.
        public var wan2gpDownloads: Bool?
        public var fetch: FetchEntry?

        enum CodingKeys: String, CodingKey {
            case action, path, reason, url, repo, commit, size, sha256, gitSHA1 = "git_sha1", wantedBy = "wanted_by",
                 wan2gpDownloads = "wan2gp_downloads", fetch
        }

        public init(_ a: Action) {
            action = a.kind
            path = a.path
            reason = a.reason
            if let f = a.file {
                url = f.url
                repo = f.repo
                commit = f.commit
                size = f.expected.size
                sha256 = f.expected.sha256
                gitSHA1 = f.expected.gitSHA1
                wantedBy = f.wantedBy
                wan2gpDownloads = f.downloadable ? nil : false
            }
            fetch = a.fetch.map(FetchEntry.init)
        }
    }

    /// How an action's content is obtained. A download's size is written as null when unknown.
    public enum FetchEntry: Codable, Equatable, Sendable {
        case download(url: String, size: Int64?)
        case link(source: String, from: String, basis: MatchBasis, mode: LinkMode)

        enum CodingKeys: String, CodingKey { case kind, url, size, source, from, basis, mode }

        public init(_ fetch: Fetch) {
            switch fetch {
            case .download(let url, let size): self = .download(url: url, size: size)
            case .link(let source, let from, let basis, let mode): self = .link(source: source, from: from, basis: basis, mode: mode)
            }
        }

        public init(from decoder: Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            switch try c.decode(String.self, forKey: .kind) {
            case "download": self = .download(url: try c.decode(String.self, forKey: .url), size: try c.decodeIfPresent(Int64.self, forKey: .size))
            case "link":
                self = .link(source: try c.decode(String.self, forKey: .source), from: try c.decode(String.self, forKey: .from),
                             basis: try c.decode(MatchBasis.self, forKey: .basis), mode: try c.decode(LinkMode.self, forKey: .mode))
            case let other:
                throw DecodingError.dataCorruptedError(forKey: .kind, in: c, debugDescription: "'\(other)' is neither download nor link")
            }
        }

        public func encode(to encoder: Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            switch self {
            case .download(let url, let size):
                try c.encode("download", forKey: .kind)
                try c.encode(url, forKey: .url)
                try c.encode(size, forKey: .size)
            case .link(let source, let from, let basis, let mode):
                try c.encode("link", forKey: .kind)
                try c.encode(source, forKey: .source)
                try c.encode(from, forKey: .from)
                try c.encode(basis, forKey: .basis)
                try c.encode(mode, forKey: .mode)
            }
        }
    }

    public struct SummaryEntry: Codable, Equatable, Sendable {
        /// Per action kind, and `unchanged`.
        public var counts: [String: Int]
        public var downloadBytes: Int64
        public var unknownSizeDownloads: Int
        public var reusedBytes: Int64
        public var filesystems: [FilesystemEntry]
        /// Files wgpm placed that the manifest no longer wants, and their bytes (what `--prune`
        /// removes and frees). Optional: plans saved before these keys existed still read.
        public var prunable: Int?
        public var prunableBytes: Int64?

        enum CodingKeys: String, CodingKey {
            case counts, downloadBytes = "download_bytes", unknownSizeDownloads = "unknown_size_downloads",
                 reusedBytes = "reused_bytes", filesystems, prunable, prunableBytes = "prunable_bytes"
        }

        public init(_ s: PlanSummary) {
            var counts: [String: Int] = [:]
            for kind in ActionKind.allCases { counts[kind.rawValue] = s.count(kind) }
            counts["unchanged"] = s.unchanged
            self.counts = counts
            downloadBytes = s.downloadBytes
            unknownSizeDownloads = s.unknownSizeDownloads
            reusedBytes = s.reusedBytes
            filesystems = s.filesystems.map(FilesystemEntry.init)
            prunable = s.prunable
            prunableBytes = s.prunableBytes
        }
    }

    public struct FilesystemEntry: Codable, Equatable, Sendable {
        public var id: String
        public var mountPoint: String
        public var freeBytes: Int64
        public var downloadBytes: Int64
        public var reserveBytes: Int64
        public var fits: Bool

        enum CodingKeys: String, CodingKey {
            case id, mountPoint = "mount_point", freeBytes = "free_bytes", downloadBytes = "download_bytes",
                 reserveBytes = "reserve_bytes", fits
        }

        public init(_ u: FilesystemUsage) {
            id = u.filesystem.id
            mountPoint = u.filesystem.mountPoint
            freeBytes = u.filesystem.freeBytes
            downloadBytes = u.downloadBytes
            reserveBytes = u.reserveBytes
            fits = u.fits
        }
    }
}

/// wgpm's JSON style for its own formats: sorted keys, one key per line, no escaped slashes,
/// a trailing newline; equal values give equal bytes.
public func renderJSON<T: Encodable>(_ value: T) throws -> String {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
    return String(decoding: try encoder.encode(value), as: UTF8.self) + "\n"
}

/// The same style for the ad-hoc listings (`models`, `show`, `queue`, `index --json`).
public func renderJSON(_ object: [String: Any]) throws -> String {
    let data = try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
    return String(decoding: data, as: UTF8.self) + "\n"
}
