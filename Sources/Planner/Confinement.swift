/// The one rule every relative path wgpm will write, link, rename or remove must pass: it names
/// a file below `ckpts/` or `loras/` and cannot climb out of it. Manifests, locks, Wan2GP
/// definitions, saved plans and queued jobs are all checked with it before anything is done.
///
/// Pure string rules (no file system), judged on Unicode scalars — the kernel's view, where only
/// the byte `/` separates — never on Swift's grapheme clusters, which fold a `/` and a following
/// combining mark into one Character: relative, `/`-separated, no empty, `.` or `..` segment, no
/// control, format (zero-width, bidi) or separator character, no segment starting with a
/// combining mark, no backslash (a Windows separator would be a file name here but a folder on
/// the machine that wrote it), segments of at most 255 bytes and at most 4000 bytes in all, and
/// at least one segment below the root. What the string cannot tell — a symlinked parent folder
/// that leads elsewhere — is checked where the file system is (the executor's `Confinement`).
public func confinementProblem(_ path: String) -> String? {
    if path.isEmpty { return "the path is empty" }
    let shown = printable(path)
    if path.unicodeScalars.contains(where: isInvisible) {
        return "path '\(shown)' contains a control character or an invisible one (NUL, newline, zero-width space, bidi mark …)"
    }
    if path.hasPrefix("/") || path.hasPrefix("~") {
        return "path '\(shown)' must be relative (e.g. ckpts/x.safetensors), not absolute"
    }
    if path.unicodeScalars.contains("\\") { return "path '\(shown)' contains a backslash; use '/' between folders" }
    let segments = pathSegments(path)
    if segments.contains("..") { return "path '\(shown)' climbs out of its folder ('..' is not allowed)" }
    if segments.contains(".") { return "path '\(shown)' must not contain '.' segments" }
    if segments.contains("") { return "path '\(shown)' has an empty segment ('//' or a trailing '/')" }
    if segments.contains(where: { $0.unicodeScalars.first.map(isMark) ?? false }) {
        return "path '\(shown)' has a segment that starts with a combining mark"
    }
    if segments.contains(where: { $0.utf8.count > 255 }) { return "path '\(shown.prefix(80))…' has a name longer than 255 bytes" }
    if path.utf8.count > 4000 { return "path '\(shown.prefix(80))…' is longer than 4000 bytes" }
    guard let first = segments.first, isManagedRoot(first), segments.count >= 2 else {
        return "path '\(shown)' must be below ckpts/ or loras/, the folders wgpm manages"
    }
    // wgpm's working names: partial folders (at a root or a mounted subfolder) and temporaries.
    if segments.contains(".wgpm-partial") || segments.last!.hasPrefix(".wgpm-tmp") {
        return "path '\(shown)' names wgpm's own working files"
    }
    return nil
}

/// The LoRA folders Wan2GP kept at its root, one per family, until fb9d2b0b (2025-11-28) moved
/// them into `loras/<family>/`: a checkout from before reads its LoRAs there, so a plan for it
/// places them there. A fixed list — every name those versions used — so no other folder beside
/// `ckpts/` and `loras/` can become writable.
public let legacyLoraRoots: Set<String> = [
    "loras_flux", "loras_flux2", "loras_hunyuan", "loras_hunyuan_i2v", "loras_i2v", "loras_ltxv", "loras_qwen", "loras_tts",
]

/// Whether wgpm manages the folder of this name (a path's first segment).
public func isManagedRoot(_ name: String) -> Bool {
    name == "ckpts" || name == "loras" || legacyLoraRoots.contains(name)
}

/// The `/`-separated segments of a path as the kernel sees them (split on the scalar `/`,
/// empty segments kept). Every piece of wgpm that walks a path's folders uses this.
public func pathSegments(_ path: String) -> [String] {
    var out: [String] = []
    var current = String.UnicodeScalarView()
    for u in path.unicodeScalars {
        if u == "/" {
            out.append(String(current))
            current = String.UnicodeScalarView()
        } else {
            current.append(u)
        }
    }
    out.append(String(current))
    return out
}

/// True when `path` begins with `root` and a `/`, compared as scalars.
public func isBelow(_ path: String, root: String) -> Bool {
    let p = Array(path.unicodeScalars), r = Array(root.unicodeScalars)
    return p.count > r.count && p[r.count] == "/" && Array(p[0..<r.count]) == r
}

/// Control, format (Cf: zero-width, bidi controls, the Arabic number sign that merges with what
/// follows), line/paragraph separators, surrogates, private-use and unassigned scalars.
func isInvisible(_ u: Unicode.Scalar) -> Bool {
    switch u.properties.generalCategory {
    case .control, .format, .lineSeparator, .paragraphSeparator, .surrogate, .privateUse, .unassigned: return true
    default: return false
    }
}

func isMark(_ u: Unicode.Scalar) -> Bool {
    switch u.properties.generalCategory {
    case .nonspacingMark, .spacingMark, .enclosingMark: return true
    default: return false
    }
}

/// A path for a message: invisible characters shown as `?`, so what a reviewer reads is what
/// the name holds.
public func printable(_ text: String) -> String {
    var out = ""
    for u in text.unicodeScalars { out.unicodeScalars.append(isInvisible(u) ? "?" : u) }
    return out
}
