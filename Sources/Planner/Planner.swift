/// Computes the actions that bring the observed state to the desired one.
///
/// A pure function: no clock, no file system, no network, no randomness. Two calls with equal
/// inputs give equal plans, and the output is sorted by path. After a successful apply the
/// observed state equals the desired one and the plan is empty (the convergence property).
public func makePlan(desired: [DesiredFile], observed: ObservedState, options: PlanOptions = PlanOptions()) -> Plan {
    var actions: [Action] = []
    var unchanged: [String] = []
    let desiredPaths = Set(desired.map(\.path))

    for file in desired.sorted(by: { $0.path < $1.path }) {
        let observation = observed.paths[file.path] ?? .missing
        switch observation {
        case .directory:
            actions.append(Action(kind: .conflict, path: file.path,
                                  reason: "a directory is in the way of a file; not touched — move it away, then apply again", file: file))
        case .other:
            actions.append(Action(kind: .conflict, path: file.path,
                                  reason: "a special file is in the way; not touched — move it away, then apply again", file: file))
        case .unreadable(let why):
            actions.append(Action(kind: .conflict, path: file.path,
                                  reason: "cannot read: \(why); not touched — fix its owner or permissions", file: file))
        case .missing:
            let fetch = resolve(file, candidates: observed.candidates[file.path] ?? [], mode: options.linkMode, targetFS: observed.filesystemOf[file.path]?.id)
            let kind: ActionKind = if case .link = fetch { .link } else { .download }
            var reason = (fetch.isDownload ? "not present; " : "") + describe(fetch, requested: options.linkMode)
            if !file.downloadable { reason += "; Wan2GP does not download this file itself" }
            actions.append(Action(kind: kind, path: file.path, fetch: fetch, reason: reason, file: file))
        case .file(let content):
            if let mismatch = mismatch(content, file.expected) {
                let fetch = resolve(file, candidates: observed.candidates[file.path] ?? [], mode: options.linkMode, targetFS: observed.filesystemOf[file.path]?.id)
                actions.append(Action(kind: .replace, path: file.path, fetch: fetch,
                                      reason: "\(mismatch); \(describe(fetch, requested: options.linkMode))", file: file))
            } else {
                unchanged.append(file.path)
            }
        case .symlink(let target, let content):
            let problem: String?
            if let content {
                problem = mismatch(content, file.expected).map { "link to the wrong content (\($0))" }
            } else {
                problem = "dangling link to \(target)"
            }
            if let problem {
                let fetch = resolve(file, candidates: observed.candidates[file.path] ?? [], mode: options.linkMode, targetFS: observed.filesystemOf[file.path]?.id)
                actions.append(Action(kind: .replace, path: file.path, fetch: fetch,
                                      reason: "\(problem); \(describe(fetch, requested: options.linkMode))", file: file))
            } else {
                unchanged.append(file.path)
            }
        }
    }

    // Files wgpm placed that nobody wants now: removed with --prune, counted without it.
    var prunable = 0
    var prunableBytes: Int64 = 0
    for path in observed.managedPaths.sorted() where !desiredPaths.contains(path) {
        switch observed.paths[path] ?? .missing {
        case .file(let content):
            prunable += 1
            prunableBytes = saturatingSum(prunableBytes, content.size)
        case .symlink, .unreadable:
            prunable += 1  // a link frees no space; an unreadable file's size is not known
        case .missing, .directory, .other:
            break
        }
    }

    if options.prune {
        for path in observed.managedPaths.sorted() where !desiredPaths.contains(path) {
            let observation = observed.paths[path] ?? .missing
            switch observation {
            case .missing:
                continue
            case .directory, .other:
                actions.append(Action(kind: .conflict, path: path,
                                      reason: "created by wgpm, no longer wanted, but now not a file; not touched — remove it yourself if it is not needed"))
            // Removing needs write access to the folder, not read access to the file.
            case .file, .symlink, .unreadable:
                actions.append(Action(kind: .remove, path: path,
                                      reason: "created by wgpm and no longer wanted by the manifest"))
            }
        }
    }

    actions.sort { $0.path < $1.path }
    var summary = summarize(actions: actions, unchanged: unchanged.count, observed: observed, reserve: options.reserveBytes)
    summary.prunable = prunable
    summary.prunableBytes = prunableBytes
    var plan = Plan(actions: actions, unchanged: unchanged, summary: summary)
    plan.blockers = observed.unwritableFolders.sorted { $0.key < $1.key }.compactMap { folder, reason in
        let writes = actions.filter { $0.kind != .conflict && isBelow($0.path, root: folder) }.count
        guard writes > 0 else { return nil }
        return "\(reason): apply would fail on the \(counted(writes, "file")) to write there — fix the folder's owner or permissions, or run wgpm as the user that owns it"
    }
    return plan
}

/// Why `content` is not the expected file, or nil when it is.
///
/// A file whose expected identity carries no hash is accepted on its size and on its first bytes
/// fitting its format (an HTML login page saved as `x.safetensors` is not): there is nothing
/// better to compare against. With a hash, the hash alone decides.
func mismatch(_ content: FileContent, _ expected: FileIdentity) -> String? {
    if let size = expected.size, size != content.size {
        return "size differs: \(formatBytes(content.size)) on disk, \(formatBytes(size)) expected"
    }
    if !expected.isVerifiable, let problem = content.formatProblem {
        return problem
    }
    if let sha = expected.sha256 {
        guard let actual = content.sha256 else { return "content not verified" }
        if actual != sha { return "sha256 differs: \(short(actual)) on disk, \(short(sha)) expected" }
    } else if let sha1 = expected.gitSHA1 {
        guard let actual = content.gitSHA1 else { return "content not verified" }
        if actual != sha1 { return "git sha1 differs: \(short(actual)) on disk, \(short(sha1)) expected" }
    }
    return nil
}

/// The resolution order of SPEC §3.3: sha256 (or git sha1), then source URL, then file name and
/// size, then download. A candidate whose hash is known and differs is never used.
func resolve(_ file: DesiredFile, candidates: [ReuseCandidate], mode: LinkMode, targetFS: String? = nil) -> Fetch {
    let expected = file.expected
    // A hardlink cannot cross filesystems: such a candidate is copied instead (and the plan says so).
    func placement(for c: ReuseCandidate) -> LinkMode {
        guard mode == .hardlink, let fs = c.filesystemID, let targetFS, fs != targetFS else { return mode }
        return .copy
    }
    let sized = candidates.filter { expected.size == nil || $0.content.size == expected.size }
    func contradicts(_ c: ReuseCandidate) -> Bool {
        if let sha = expected.sha256, let actual = c.content.sha256, actual != sha { return true }
        if let sha1 = expected.gitSHA1, let actual = c.content.gitSHA1, actual != sha1 { return true }
        return false
    }
    if let sha = expected.sha256, let c = sized.first(where: { $0.content.sha256 == sha }) {
        return .link(source: c.source, from: c.path, basis: .sha256, mode: placement(for: c))
    }
    if let sha1 = expected.gitSHA1, let c = sized.first(where: { $0.content.gitSHA1 == sha1 }) {
        return .link(source: c.source, from: c.path, basis: .gitSHA1, mode: placement(for: c))
    }
    let wantedURL = normalizeURL(file.url)
    if let c = sized.first(where: { $0.sourceURL.map(normalizeURL) == wantedURL && !contradicts($0) }) {
        return .link(source: c.source, from: c.path, basis: .url, mode: placement(for: c))
    }
    // A name match is only trusted when nothing better can be said: with a known hash, a
    // same-named file either matched above by hash or is different content.
    if !expected.isVerifiable, expected.size != nil {
        let name = basename(file.path)
        if let c = sized.first(where: { basename($0.path) == name }) {
            return .link(source: c.source, from: c.path, basis: .filenameUnverified, mode: placement(for: c))
        }
    }
    return .download(url: file.url, size: expected.size)
}

func describe(_ fetch: Fetch, requested: LinkMode? = nil) -> String {
    switch fetch {
    case .download: return "download"
    case .link(let source, _, let basis, let mode):
        let note = requested == .hardlink && mode == .copy ? "; a hardlink cannot cross filesystems, so it is copied" : ""
        return "\(mode.rawValue) from \(source) (\(basis.rawValue))\(note)"
    }
}

/// Whether a path's current state already is the desired file (no action needed).
public func satisfies(_ observation: Observation, _ expected: FileIdentity) -> Bool {
    switch observation {
    case .file(let c): return mismatch(c, expected) == nil
    case .symlink(_, let c?): return mismatch(c, expected) == nil
    default: return false
    }
}

func summarize(actions: [Action], unchanged: Int, observed: ObservedState, reserve: Int64) -> PlanSummary {
    var counts: [ActionKind: Int] = [:]
    var download: Int64 = 0
    var reused: Int64 = 0
    var unknown = 0
    var partial: Int64 = 0
    var perFS: [String: FilesystemUsage] = [:]
    for action in actions {
        counts[action.kind, default: 0] += 1
        reused = saturatingSum(reused, action.reusedBytes)
        guard case .download(_, let size)? = action.fetch else { continue }
        if size == nil { unknown += 1 }
        download = saturatingSum(download, size ?? 0)
        // What the partial file holds is on the disk already: only the rest needs room.
        let held = min(max(0, observed.partialBytes[action.path] ?? 0), size ?? 0)
        partial = saturatingSum(partial, held)
        if let fs = observed.filesystemOf[action.path] {
            let usage = perFS[fs.id, default: FilesystemUsage(filesystem: fs, downloadBytes: 0, reserveBytes: reserve)]
            perFS[fs.id] = FilesystemUsage(filesystem: fs, downloadBytes: saturatingSum(usage.downloadBytes, (size ?? 0) - held), reserveBytes: reserve)
        }
    }
    var summary = PlanSummary(counts: counts, unchanged: unchanged, downloadBytes: download,
                              unknownSizeDownloads: unknown, reusedBytes: reused,
                              filesystems: perFS.values.sorted { $0.filesystem.id < $1.filesystem.id })
    summary.partialBytes = partial
    return summary
}

/// `a + b`, held at Int64.max instead of trapping: sizes in a lock or recording are input.
public func saturatingSum(_ a: Int64, _ b: Int64) -> Int64 {
    let (sum, overflow) = a.addingReportingOverflow(b)
    return overflow ? (b > 0 ? .max : .min) : sum
}

func short(_ hash: String) -> String { String(hash.prefix(12)) + "…" }

func basename(_ path: String) -> String {
    path.split(separator: "/", omittingEmptySubsequences: true).last.map(String.init) ?? path
}

/// URLs compare without `?download=true` and with `/blob/` read as `/resolve/`.
public func normalizeURL(_ url: String) -> String {
    var u = url
    if let q = u.firstIndex(of: "?") { u = String(u[..<q]) }
    return u.replacingFirst("/blob/", with: "/resolve/")
}

extension String {
    func replacingFirst(_ target: String, with replacement: String) -> String {
        guard !target.isEmpty else { return self }
        var i = startIndex
        while i < endIndex {
            if self[i...].hasPrefix(target) {
                return String(self[..<i]) + replacement + String(self[index(i, offsetBy: target.count)...])
            }
            i = index(after: i)
        }
        return self
    }
}
