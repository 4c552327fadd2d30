import Foundation
import Inventory
import Planner
#if canImport(Glibc)
import Glibc
#endif

/// Where the executor may write: below the managed roots (`ckpts/`, `loras/`), and into folders
/// outside them only where the user linked one on purpose (`linked_folders` in the config).
///
/// Every job passes `check` before its first effect, and every write, link, rename and unlink
/// goes through a folder descriptor from `openFolder` — a walk from the root, one name at a
/// time with `O_NOFOLLOW` — so that neither a crafted relative path nor a symlinked folder,
/// planted before or swapped in during a download, leads it elsewhere.
public struct Confinement: Sendable {
    public var mapper: PathMapper
    /// Absolute folders outside the roots that a symlinked folder inside them may lead to.
    public var linkedFolders: [String]

    public init(mapper: PathMapper, linkedFolders: [String] = []) {
        self.mapper = mapper
        self.linkedFolders = linkedFolders
    }

    /// For a job built by hand (tests, tools): the roots are where its target's path says.
    static func inferred(from spec: JobSpec) -> Confinement {
        let rest = pathSegments(spec.path).dropFirst().joined(separator: "/")
        let target = Array(spec.target.unicodeScalars), tail = Array(("/" + rest).unicodeScalars)
        let root = target.count > tail.count && Array(target.suffix(tail.count)) == tail
            ? String(String.UnicodeScalarView(target.dropLast(tail.count))) : (spec.target as NSString).deletingLastPathComponent
        return Confinement(mapper: PathMapper(ckpts: root, loras: root))
    }

    /// The managed root that holds `path` (`ckpts/…`, `loras/…`, an older Wan2GP's `loras_i2v/…`).
    /// A path below none (refused by `check` before any effect) answers ckpts.
    public func root(of path: String) -> String {
        mapper.root(of: path)?.directory ?? mapper.ckpts
    }

    /// Throws unless `spec` names a confined path whose target is where that path maps to and
    /// every existing folder between its root and the target is a real folder inside the root
    /// (or a symlink into a linked folder). Nothing is created or changed.
    public func check(_ spec: JobSpec) throws {
        if let problem = confinementProblem(spec.path) { throw ExecutorError.outsideFolders(path: printable(spec.path), reason: problem) }
        guard spec.target == mapper.absolute(spec.path) else {
            throw ExecutorError.outsideFolders(path: spec.path, reason: "the job's target \(spec.target) is not where \(spec.path) belongs (\(mapper.absolute(spec.path))); the queue entry was altered — run 'wgpm queue clear --failed' and plan again")
        }
        let root = root(of: spec.path)
        var current = root
        for segment in pathSegments(spec.path).dropFirst().dropLast() {
            current += "/" + segment
            guard try folderStep(current, root: root, path: spec.path) else { return }
        }
    }

    /// Creates the missing folders from the root down to `dir` (which must lie below the root
    /// of `path`), never through a symlink that leads outside. The root itself is created as
    /// configured.
    public func makeFolders(_ dir: String, for path: String) throws {
        close(try openFolder(dir, for: path, create: true))
    }

    /// Opens `dir` (the root of `path` or a folder below it) for `*at` calls, walking from the
    /// root one name at a time with `O_NOFOLLOW`, so that what is opened is what was checked —
    /// no folder swapped for a symlink between a check and a write can lead out. A symlinked
    /// folder is followed only into the root or a linked folder. With `create`, missing folders
    /// are made (`mkdirat`). The caller closes the descriptor.
    public func openFolder(_ dir: String, for path: String, create: Bool) throws -> Int32 {
        let root = root(of: path)
        if create { try makeRoot(root, for: path) }
        var fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw ExecutorError.posix(path: path, code: errno, doing: "opening the folder \(root)") }
        guard dir != root else { return fd }
        guard isBelow(dir, root: root) else {
            close(fd)
            throw ExecutorError.outsideFolders(path: path, reason: "\(dir) is not below \(root)")
        }
        var current = root
        let rest = String(String.UnicodeScalarView(dir.unicodeScalars.dropFirst(root.unicodeScalars.count + 1)))
        for segment in pathSegments(rest) where !segment.isEmpty {
            current += "/" + segment
            let flags = O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC
            var next = openat(fd, segment, flags)
            if next < 0 && errno == ENOENT && create {
                if mkdirat(fd, segment, 0o755) != 0 && errno != EEXIST {
                    let code = errno
                    close(fd)
                    throw ExecutorError.posix(path: path, code: code, doing: "creating the folder \(current)")
                }
                next = openat(fd, segment, flags)
            }
            if next < 0 && (errno == ELOOP || errno == ENOTDIR) {
                var st = stat()
                let isLink = fstatat(fd, segment, &st, AT_SYMLINK_NOFOLLOW) == 0 && st.st_mode & S_IFMT == S_IFLNK
                guard isLink else {
                    close(fd)
                    throw ExecutorError.cannotWrite(path: path, reason: "\(current) is a file where a folder belongs; move it away")
                }
                do { _ = try folderStep(current, root: root, path: path) } catch { close(fd); throw error }
                next = realPath(current).map { open($0, O_RDONLY | O_DIRECTORY | O_CLOEXEC) } ?? -1
            }
            if next < 0 {
                let code = errno
                close(fd)
                throw ExecutorError.posix(path: path, code: code, doing: "opening the folder \(current)")
            }
            close(fd)
            fd = next
        }
        return fd
    }

    /// The folder for partial downloads of `path`: `.wgpm-partial` at the top of the filesystem
    /// that will hold the target, so the final rename never crosses filesystems — the root's own
    /// folder, or that of a subfolder that is another mount. It must be a real folder.
    public func partialFolder(for spec: JobSpec, fileSystem: FileSystem = LocalFileSystem()) throws -> String {
        let root = root(of: spec.path)
        var top = root
        if let rootDevice = fileSystem.stat(root)?.device {
            // The nearest existing folder above the target decides its filesystem.
            var existing = (spec.target as NSString).deletingLastPathComponent
            while existing.utf8.count > root.utf8.count, fileSystem.lstat(existing)?.kind != .directory {
                existing = (existing as NSString).deletingLastPathComponent
            }
            if existing.utf8.count > root.utf8.count, let device = fileSystem.stat(existing)?.device, device != rootDevice {
                top = existing
                while true {
                    let parent = (top as NSString).deletingLastPathComponent
                    guard parent.utf8.count > root.utf8.count, fileSystem.stat(parent)?.device == device else { break }
                    top = parent
                }
            }
        }
        let folder = top + "/.wgpm-partial"
        if let st = fileSystem.lstat(folder), st.kind != .directory {
            let what = st.kind == .symlink ? "a symlink (to \(fileSystem.readlink(folder) ?? "?"))" : "not a folder"
            throw ExecutorError.outsideFolders(path: spec.path, reason: "\(folder) is \(what); wgpm keeps partial downloads there and needs a real folder — remove it")
        }
        return folder
    }

    /// Whether `dir` exists as an acceptable folder (false: missing). Throws when something
    /// else is there, or a symlink leads out of the root and the linked folders.
    private func folderStep(_ dir: String, root: String, path: String) throws -> Bool {
        var st = stat()
        guard lstat(dir, &st) == 0 else {
            if errno == ENOENT { return false }
            throw ExecutorError.posix(path: path, code: errno, doing: "looking at \(dir)")
        }
        switch st.st_mode & S_IFMT {
        case S_IFDIR:
            return true
        case S_IFLNK:
            guard let real = realPath(dir), isFolder(real) else {
                throw ExecutorError.outsideFolders(path: path, reason: "\(dir) is a symlink that does not lead to a folder")
            }
            let allowed = ([realPath(root) ?? root] + linkedFolders.map { realPath($0) ?? $0 })
            guard allowed.contains(where: { real == $0 || real.hasPrefix($0 + "/") }) else {
                throw ExecutorError.outsideFolders(path: path, reason: "\(dir) is a symlink to \(real), outside \(root); if that folder is meant to hold models, add it to linked_folders in the config")
            }
            return true
        default:
            throw ExecutorError.cannotWrite(path: path, reason: "\(dir) is a file where a folder belongs; move it away")
        }
    }

    /// The root as configured: its parents are the user's, so they are created like `mkdir -p`.
    private func makeRoot(_ root: String, for path: String) throws {
        if isFolder(root) { return }
        var missing: [String] = []
        var current = root
        while !current.isEmpty, current != "/", !isFolder(current) {
            missing.append(current)
            current = (current as NSString).deletingLastPathComponent
        }
        for dir in missing.reversed() where mkdir(dir, 0o755) != 0 && errno != EEXIST {
            throw ExecutorError.posix(path: path, code: errno, doing: "creating the folder \(dir)")
        }
    }
}

func realPath(_ path: String) -> String? {
    guard let p = realpath(path, nil) else { return nil }
    defer { free(p) }
    return String(cString: p)
}

func isFolder(_ path: String) -> Bool {
    var st = stat()
    return stat(path, &st) == 0 && st.st_mode & S_IFMT == S_IFDIR
}
