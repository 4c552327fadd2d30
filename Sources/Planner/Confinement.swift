/// The one rule every relative path wgpm will write, link, rename or remove must pass: it names
/// a file below `ckpts/` or `loras/` and cannot climb out of it. Manifests, locks, Wan2GP
/// definitions, saved plans and queued jobs are all checked with it before anything is done.
///
/// Pure string rules (no file system): relative, `/`-separated, no empty, `.` or `..` segment,
/// no NUL or other control character, no backslash (a Windows separator would be a file name
/// here but a folder on the machine that wrote it), and at least one segment below the root.
/// What the string cannot tell — a symlinked parent folder that leads elsewhere — is checked
/// where the file system is (the executor's `Confinement`).
public func confinementProblem(_ path: String) -> String? {
    if path.isEmpty { return "the path is empty" }
    if path.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }) {
        return "path '\(printable(path))' contains a control character (NUL, newline …)"
    }
    if path.hasPrefix("/") || path.hasPrefix("~") {
        return "path '\(path)' must be relative (e.g. ckpts/x.safetensors), not absolute"
    }
    if path.contains("\\") { return "path '\(path)' contains a backslash; use '/' between folders" }
    let segments = path.split(separator: "/", omittingEmptySubsequences: false)
    if segments.contains("..") { return "path '\(path)' climbs out of its folder ('..' is not allowed)" }
    if segments.contains(".") { return "path '\(path)' must not contain '.' segments" }
    if segments.contains("") { return "path '\(path)' has an empty segment ('//' or a trailing '/')" }
    guard let first = segments.first, first == "ckpts" || first == "loras", segments.count >= 2 else {
        return "path '\(path)' must be below ckpts/ or loras/, the folders wgpm manages"
    }
    // wgpm's working names: partial folders (at a root or a mounted subfolder) and temporaries.
    if segments.contains(".wgpm-partial") || segments.last!.hasPrefix(".wgpm-tmp") {
        return "path '\(path)' names wgpm's own working files"
    }
    return nil
}

func printable(_ text: String) -> String {
    var out = ""
    for u in text.unicodeScalars { out.unicodeScalars.append(u.value < 0x20 || u.value == 0x7F ? "?" : u) }
    return out
}
