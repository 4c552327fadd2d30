import Planner

/// GitHub refuses a pull-request comment or a step summary part longer than this many characters.
public let githubCommentLimit = 65_536

/// Text as a GFM table cell or inline text: nothing in it starts markup, a pipe does not end
/// the cell, and a control character (or a newline) cannot break the table.
func mdText(_ text: String) -> String {
    var out = ""
    for scalar in text.unicodeScalars {
        switch scalar {
        case "\\", "`", "*", "_", "[", "]", "<", ">", "#", "|", "~", "!": out += "\\" + String(scalar)
        case "&": out += "&amp;"
        default: out.unicodeScalars.append(scalar.value < 0x20 || scalar.value == 0x7F ? "?" : scalar)
        }
    }
    return out
}

/// A path or id as code. A backtick cannot be put in a code span safely, so such a name is
/// escaped text instead; `|` is escaped as GFM tables require even inside code.
func mdCode(_ text: String) -> String {
    if text.contains("`") || text.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }) { return mdText(text) }
    return "`" + text.replacingOccurrences(of: "|", with: "\\|") + "`"
}

func mdTable(_ header: [String], align: String, _ rows: [[String]]) -> [String] {
    let separator = align.map { $0 == "r" ? "---:" : "---" }
    return ["| " + header.joined(separator: " | ") + " |", "| " + separator.joined(separator: " | ") + " |"]
        + rows.map { "| " + $0.joined(separator: " | ") + " |" }
}

/// Renders with ever fewer rows in the long parts until the text fits `limit` characters
/// (UTF-8 bytes, which are never fewer): first the per-file list shrinks, then the model table.
/// `render(fileRows, modelRows)` must say how many rows it left out.
func fitting(limit: Int, files: Int, models: Int, _ render: (Int, Int) -> String) -> String {
    let full = render(files, models)
    if full.utf8.count <= limit { return full }
    func largest(upTo n: Int, _ text: (Int) -> String) -> Int? {
        guard text(0).utf8.count <= limit else { return nil }
        var (lo, hi) = (0, n)
        while lo < hi {
            let mid = (lo + hi + 1) / 2
            if text(mid).utf8.count <= limit { lo = mid } else { hi = mid - 1 }
        }
        return lo
    }
    if let k = largest(upTo: files, { render($0, models) }) { return render(k, models) }
    let m = largest(upTo: models, { render(0, $0) }) ?? 0
    return render(0, m)
}

func leftOut(_ n: Int, _ what: String) -> String {
    "_… and \(n) more \(what), left out to stay within GitHub's \(githubCommentLimit)-character limit; the `--json` output has them all._"
}

// MARK: - diff

/// The Markdown form of a diff for a pull request: the totals first, a table of models, the
/// space check when asked, then every file in a collapsed block. Deterministic, no colour,
/// within `limit` characters.
public func renderDiffMarkdown(_ d: ManifestDiff, base: DiffSource, head: DiffSource, space: SpaceCheck? = nil,
                               limit: Int = githubCommentLimit) -> String {
    let changed = d.models.filter(\.hasChanges)
    var fileRows: [[String]] = []
    for m in changed {
        for f in m.addedFiles where f.sharedWith.isEmpty {
            fileRows.append(["add", mdCode(f.path), size(f.size), mdCode(m.id)])
        }
    }
    var shared: [String: DiffFile] = [:]
    for m in changed { for f in m.addedFiles where !f.sharedWith.isEmpty { shared[f.path] = f } }
    for f in d.addedExtraFiles { fileRows.append(["add", mdCode(f.path), size(f.size), mdCode(filesEntry)]) }
    var sharedWanters: [String: [String]] = [:]
    for m in changed { for f in m.addedFiles where !f.sharedWith.isEmpty { sharedWanters[f.path] = (f.sharedWith + [m.id]).sorted() } }
    for path in shared.keys.sorted() {
        fileRows.append(["add (shared)", mdCode(path), size(shared[path]!.size), Set(sharedWanters[path]!).sorted().map(mdCode).joined(separator: ", ")])
    }
    for f in d.removedFiles { fileRows.append(["unwanted", mdCode(f.path), size(f.size), "—"]) }
    for p in d.movedPins where p.contentChanged {
        fileRows.append(["new content", mdCode(p.path), size(p.size), mdText(pinNote(p, arrow: "→"))])
    }
    fileRows.sort { ($0[1], $0[0]) < ($1[1], $1[0]) }
    // After the per-file rows, so that a long list cut short keeps these totals.
    let groups = commitMoves(d.movedPins)
    let commitRows = groups.map { g in
        ["commit moved", "\(counted(g.files.count, "file")) of \(mdCode(g.repo))", "no download",
         "\(short(g.base)) → \(short(g.head)), same bytes"]
    }

    let sharedBytes = shared.values.reduce(Int64(0)) { $0 &+ ($1.size ?? 0) }
    var modelRows: [[String]] = changed.map { m in
        let own = m.addedFiles.filter(\.sharedWith.isEmpty)
        let addsCell = own.isEmpty ? "—" : "\(counted(own.count, "file")), \(formatBytes(m.ownBytes))"
        let freed = m.droppedFiles.filter(\.sharedWith.isEmpty)
        let kept = m.droppedFiles.filter { !$0.sharedWith.isEmpty }
        let freesCell = freed.isEmpty ? "—" : "\(counted(freed.count, "file")), \(formatBytes(m.freedBytes))"
        var notes = m.settings.map { "\(mdText($0.name)): \(mdText($0.base ?? "unset")) → **\(mdText($0.head ?? "unset"))**" }
        let sharedAdded = m.addedFiles.filter { !$0.sharedWith.isEmpty }
        if !sharedAdded.isEmpty {
            notes.append("\(counted(sharedAdded.count, "new file")) shared with " + Set(sharedAdded.flatMap(\.sharedWith)).sorted().map(mdCode).joined(separator: ", "))
        }
        if !m.reusedFiles.isEmpty {
            notes.append("reuses \(counted(m.reusedFiles.count, "file")) wanted before by " + Set(m.reusedFiles.flatMap(\.sharedWith)).sorted().map(mdCode).joined(separator: ", "))
        }
        if !kept.isEmpty {
            notes.append("no longer wants \(counted(kept.count, "file")) (still wanted by " + Set(kept.flatMap(\.sharedWith)).sorted().map(mdCode).joined(separator: ", ") + ")")
        }
        if m.settings.isEmpty && !own.isEmpty && !m.droppedFiles.isEmpty && m.change == .changed { notes.append("files swapped (a settings change?)") }
        return [mdCode(m.id), m.change.rawValue, addsCell, freesCell, notes.isEmpty ? "—" : notes.joined(separator: "; ")]
    }
    if !shared.isEmpty {
        modelRows.append(["_shared by several_", "", "\(counted(shared.count, "file")), \(formatBytes(sharedBytes))", "—", "counted once"])
    }
    if !d.addedExtraFiles.isEmpty {
        let bytes = d.addedExtraFiles.reduce(Int64(0)) { $0 &+ ($1.size ?? 0) }
        modelRows.append([mdCode(filesEntry), "added", "\(counted(d.addedExtraFiles.count, "file")), \(formatBytes(bytes))", "—", "extra files"])
    }

    func render(_ nFiles: Int, _ nModels: Int) -> String {
        var lines = ["### wgpm diff: \(mdCode(base.file)) → \(mdCode(head.file))", ""]
        var headline = "**\(mdText(diffHeadline(d)))**"
        if let space { headline += space.blocked ? " ⛔ **Blocked on \(mdCode(space.machine))**" : " ✅ Fits on \(mdCode(space.machine))" }
        lines.append(headline)
        if !modelRows.isEmpty {
            lines.append("")
            lines += mdTable(["Model", "Change", "Adds", "Unwanted", "Notes"], align: "llrrl",
                             Array(modelRows.prefix(nModels)))
            if nModels < modelRows.count { lines += ["", leftOut(modelRows.count - nModels, "models")] }
        }
        if let space { lines += [""] + spaceMarkdown(space) }
        if !fileRows.isEmpty || !commitRows.isEmpty {
            let total = fileRows.count + groups.reduce(0) { $0 + $1.files.count }
            lines += ["", "<details><summary>\(counted(total, "file")) changed</summary>", ""]
            lines += mdTable(["Change", "Path", "Size", "Wanted by / pin"], align: "llrl", Array(fileRows.prefix(nFiles)) + commitRows)
            if nFiles < fileRows.count { lines += ["", leftOut(fileRows.count - nFiles, "files")] }
            lines += ["", "</details>"]
        }
        return lines.joined(separator: "\n") + "\n"
    }
    return fitting(limit: limit, files: fileRows.count, models: modelRows.count, render)
}

func size(_ bytes: Int64?) -> String { bytes.map(formatBytes) ?? "unknown" }

func spaceMarkdown(_ s: SpaceCheck) -> [String] {
    var lines = ["Space on \(mdCode(s.machine)):", ""]
    lines += mdTable(["Filesystem", "To download", "Free", "Keeps free", "Fits"], align: "lrrrl", s.filesystems.map { fs in
        [mdCode(fs.filesystem.mountPoint), formatBytes(fs.downloadBytes), formatBytes(fs.filesystem.freeBytes),
         formatBytes(fs.reserveBytes), fs.fits ? "yes" : "**NO — not enough space**"]
    })
    if !s.conflicts.isEmpty {
        lines += ["", "\(counted(s.conflicts.count, "path")) in the way on that machine: " + s.conflicts.prefix(5).map(mdCode).joined(separator: ", ")
                  + (s.conflicts.count > 5 ? " …" : "")]
    }
    return lines
}

// MARK: - plan

/// The Markdown form of a plan for a pull request or a step summary: the totals and whether
/// apply would refuse, a table of what each model costs (a file several models want is counted
/// once, in its own row), the space per filesystem, then every action in a collapsed block.
public func renderPlanMarkdown(_ plan: Plan, desired: [DesiredFile], manifest: String, machine: String? = nil,
                               limit: Int = githubCommentLimit) -> String {
    let actionOf = Dictionary(plan.actions.map { ($0.path, $0) }, uniquingKeysWith: { a, _ in a })
    struct Row { var files = 0, download = 0, link = 0, unchanged = 0, other = 0; var downloadBytes: Int64 = 0, reusedBytes: Int64 = 0 }
    var rows: [String: Row] = [:]
    let sharedKey = "\u{0}shared"
    for f in desired {
        let key = f.wantedBy.count > 1 ? sharedKey : (f.wantedBy.first ?? filesEntry)
        var r = rows[key, default: Row()]
        r.files += 1
        switch actionOf[f.path] {
        case nil: r.unchanged += 1
        case let a?:
            switch a.kind {
            case .download: r.download += 1
            case .link: r.link += 1
            default: r.other += 1
            }
            r.downloadBytes &+= a.downloadBytes
            r.reusedBytes &+= a.reusedBytes
        }
        rows[key] = r
    }
    let s = plan.summary
    let blocked = plan.isBlocked
    let models = Set(desired.flatMap(\.wantedBy)).subtracting([filesEntry]).count
    var headline = "**\(counted(models, "model")), \(counted(desired.count, "file")): \(s.count(.download)) to download (\(formatBytes(s.downloadBytes))"
    if s.unknownSizeDownloads > 0 { headline += " + \(s.unknownSizeDownloads) of unknown size" }
    headline += "), \(s.count(.link)) to link (\(formatBytes(s.reusedBytes)) reused), \(s.count(.replace)) to replace, "
        + "\(s.count(.remove)) to remove, \(s.unchanged) unchanged.**"
    if blocked {
        var why: [String] = []
        let short = s.filesystems.filter { !$0.fits }.map { mdCode($0.filesystem.mountPoint) }
        if !short.isEmpty { why.append("not enough space on " + short.joined(separator: ", ")) }
        if s.count(.conflict) > 0 { why.append(counted(s.count(.conflict), "conflict")) }
        if !plan.blockers.isEmpty { why.append(counted(plan.blockers.count, "folder") + " it cannot write") }
        headline += " ⛔ **Blocked:** " + why.joined(separator: "; ") + " — apply would refuse."
    } else {
        headline += plan.hasChanges ? " ✅ Not blocked." : " ✅ No changes."
    }

    func order(_ a: String, _ b: String) -> Bool {
        let rank = { (k: String) in k == sharedKey ? 2 : k == filesEntry ? 1 : 0 }
        return (rank(a), a) < (rank(b), b)
    }
    var modelRows: [[String]] = rows.keys.sorted(by: order).map { key in
        let r = rows[key]!
        let name = key == sharedKey ? "_shared by several_" : mdCode(key)
        return [name, "\(r.files)", r.download == 0 ? "—" : "\(r.download) · \(formatBytes(r.downloadBytes))",
                r.link == 0 ? "—" : "\(r.link) · \(formatBytes(r.reusedBytes))", "\(r.unchanged)", r.other == 0 ? "—" : "\(r.other)"]
    }
    let removes = plan.actions.filter { $0.kind == .remove }
    if !removes.isEmpty { modelRows.append(["_no longer wanted_", "\(removes.count)", "—", "—", "—", "\(removes.count) to remove"]) }

    let fileRows: [[String]] = plan.actions.map { a in
        let sizeCell: String
        switch a.fetch {
        case .download(_, let n)?: sizeCell = size(n)
        case .link?: sizeCell = size(a.file?.expected.size) + " reused"
        case nil: sizeCell = "—"
        }
        return [a.kind.rawValue, mdCode(a.path), sizeCell, mdText(a.reason)]
    }

    func render(_ nFiles: Int, _ nModels: Int) -> String {
        var lines = ["### wgpm plan: \(mdCode(manifest))" + (machine.map { " on \(mdCode($0))" } ?? ""), "", headline]
        if !modelRows.isEmpty {
            lines.append("")
            lines += mdTable(["Model", "Files", "Download", "Link (reused)", "Unchanged", "Attention"], align: "lrrrrl",
                             Array(modelRows.prefix(nModels)))
            if nModels < modelRows.count { lines += ["", leftOut(modelRows.count - nModels, "models")] }
        }
        let used = s.filesystems.filter { $0.downloadBytes > 0 || !$0.fits }
        if !used.isEmpty {
            lines += [""] + mdTable(["Filesystem", "To download", "Free", "Keeps free", "Fits"], align: "lrrrl", used.map { fs in
                [mdCode(fs.filesystem.mountPoint), formatBytes(fs.downloadBytes), formatBytes(fs.filesystem.freeBytes),
                 formatBytes(fs.reserveBytes), fs.fits ? "yes" : "**NO — not enough space**"]
            })
        }
        if !fileRows.isEmpty {
            lines += ["", "<details><summary>\(counted(fileRows.count, "action")) per file</summary>", ""]
            lines += mdTable(["Action", "Path", "Size", "Why"], align: "llrl", Array(fileRows.prefix(nFiles)))
            if nFiles < fileRows.count { lines += ["", leftOut(fileRows.count - nFiles, "actions")] }
            lines += ["", "</details>"]
        }
        return lines.joined(separator: "\n") + "\n"
    }
    return fitting(limit: limit, files: fileRows.count, models: modelRows.count, render)
}
