import Foundation
import Inventory
import Planner
import State
#if canImport(Glibc)
import Glibc
#endif

/// Places local content at a target as a symlink, hardlink or copy: always made under a
/// temporary name in the target's folder and renamed over the target, so the target is
/// either the old entry or the complete new one.
///
/// A source's claim about its content (an HF-cache blob's name, an InvokeAI row's hash, a
/// matching file name) is checked before anything is placed: its hash through the hash cache,
/// so each source file is read at most once while it is unchanged, or, when no hash is known,
/// its format. A source that fails is recorded as bad, so plans stop offering it.
public struct Linker: Sendable {
    public var fileSystem: FileSystem
    /// The hash cache and the record of bad sources; nil: hashes are computed every time.
    public var state: StateDatabase?
    public var confinement: Confinement?

    public init(fileSystem: FileSystem = LocalFileSystem(), state: StateDatabase? = nil, confinement: Confinement? = nil) {
        self.fileSystem = fileSystem
        self.state = state
        self.confinement = confinement
    }

    public func run(_ spec: JobSpec) throws {
        guard let source = spec.linkFrom else { throw ExecutorError.refused(path: spec.path, reason: "the queued link has no source; run 'wgpm plan' and apply again") }
        let confinement = self.confinement ?? .inferred(from: spec)
        try confinement.check(spec)
        guard let st = fileSystem.stat(source), st.kind == .file else {
            throw ExecutorError.sourceVanished(path: spec.path, source: source)
        }
        try verify(source, st, spec)
        // The target's folder is opened by a walk that follows no planted symlink; the temporary
        // entry and the rename go through that descriptor.
        let folder = try confinement.openFolder((spec.target as NSString).deletingLastPathComponent, for: spec.path, create: true)
        defer { close(folder) }
        let name = (spec.target as NSString).lastPathComponent
        let tmp = ".wgpm-tmp-\(getpid())-" + name
        unlinkat(folder, tmp, 0)
        switch spec.linkMode ?? .symlink {
        case .symlink:
            guard symlinkat(source, folder, tmp) == 0 else { throw ExecutorError.posix(path: spec.path, code: errno, doing: "creating a symlink") }
        case .hardlink:
            if linkat(AT_FDCWD, source, folder, tmp, 0) != 0 {
                if errno == EXDEV { throw ExecutorError.crossDevice(path: spec.path, source: source) }
                throw ExecutorError.posix(path: spec.path, code: errno, doing: "creating a hard link")
            }
        case .copy:
            try copyFile(source, tmp, in: folder, path: spec.path)
        }
        guard renameat(folder, tmp, folder, name) == 0 else {
            let code = errno
            unlinkat(folder, tmp, 0)
            throw ExecutorError.posix(path: spec.path, code: code, doing: "moving the link into place")
        }
        syncDirectory(folder)
    }

    /// Throws `badContent` (and records the source as bad) unless the source holds the
    /// expected content: same size, and the known hash, or a start its format allows.
    func verify(_ source: String, _ st: FileStatus, _ spec: JobSpec) throws {
        var problem: String?
        if let size = spec.size, st.size != size {
            problem = "\(formatBytes(st.size)) instead of \(formatBytes(size))"
        } else if spec.sha256 != nil || spec.gitSHA1 != nil {
            let digests: (sha256: String?, gitSHA1: String?)
            do {
                digests = try cachedDigests(of: source, st, sha256: spec.sha256 != nil, gitSHA1: spec.sha256 == nil,
                                            state: state, fileSystem: fileSystem)
            } catch {
                throw ExecutorError.sourceVanished(path: spec.path, source: source)
            }
            if let expected = spec.sha256, let actual = digests.sha256, actual != expected {
                problem = "sha256 \(actual.prefix(12))… instead of \(expected.prefix(12))…"
            } else if spec.sha256 == nil, let expected = spec.gitSHA1, let actual = digests.gitSHA1, actual != expected {
                problem = "git sha1 \(actual.prefix(12))… instead of \(expected.prefix(12))…"
            }
        } else {
            problem = try formatProblem(source, name: (spec.path as NSString).lastPathComponent, path: spec.path)
        }
        guard let problem else { return }
        try? state?.markBadSource(path: source, stamp: FileStamp(st), reason: problem)
        throw ExecutorError.badContent(path: spec.path, source: source, reason: problem)
    }

    private func formatProblem(_ source: String, name: String, path: String) throws -> String? {
        let fd = open(source, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw ExecutorError.sourceVanished(path: path, source: source) }
        defer { close(fd) }
        var buffer = [UInt8](repeating: 0, count: ContentFormat.prefixLength)
        let n = read(fd, &buffer, buffer.count)
        guard n >= 0 else { throw ExecutorError.sourceVanished(path: path, source: source) }
        return ContentFormat.problem(prefix: buffer[0..<n], name: name)
    }

    /// Copies `from` into a new file `to` (never an existing entry: `O_EXCL | O_NOFOLLOW`);
    /// on any failure `to` is removed again.
    func copyFile(_ from: String, _ to: String, in folder: Int32, path: String) throws {
        let input = open(from, O_RDONLY | O_CLOEXEC)
        guard input >= 0 else { throw ExecutorError.sourceVanished(path: path, source: from) }
        defer { close(input) }
        // The copy is as readable as its source and no more: a source readable by its owner only
        // must not become readable by everyone in loras/. (setuid/setgid bits are not copied.)
        var sourceStatus = stat()
        let mode = fstat(input, &sourceStatus) == 0 ? mode_t(sourceStatus.st_mode) & 0o777 : 0o600
        let output = openat(folder, to, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode)
        guard output >= 0 else { throw ExecutorError.posix(path: path, code: errno, doing: "creating the copy") }
        _ = fchmod(output, mode)  // open's mode is masked by the umask; the source's bits are meant
        var placed = false
        defer {
            close(output)
            if !placed { unlinkat(folder, to, 0) }
        }
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: 4 << 20, alignment: 4096)
        defer { buffer.deallocate() }
        while true {
            let n = read(input, buffer, 4 << 20)
            if n < 0 { if errno == EINTR { continue }; throw ExecutorError.sourceVanished(path: path, source: from) }
            if n == 0 { break }
            var off = 0
            while off < n {
                let w = write(output, buffer + off, n - off)
                if w < 0 { if errno == EINTR { continue }; throw ExecutorError.posix(path: path, code: errno, doing: "writing the copy") }
                off += w
            }
        }
        guard fsync(output) == 0 else { throw ExecutorError.posix(path: path, code: errno, doing: "flushing the copy") }
        placed = true
    }
}

extension FileStamp {
    init(_ st: FileStatus) {
        self.init(device: st.device, inode: st.inode, size: st.size, mtimeNanoseconds: st.mtimeNanoseconds)
    }
}

/// The requested digests of a local file: from the hash cache while its stamp (device, inode,
/// size, mtime) is unchanged, else computed — only the missing ones, in one read — and stored,
/// so each unchanged file is read at most once. Throws when the file cannot be read.
func cachedDigests(of path: String, _ st: FileStatus, sha256 wantSHA: Bool, gitSHA1 wantSHA1: Bool,
                   state: StateDatabase?, fileSystem: FileSystem) throws -> (sha256: String?, gitSHA1: String?) {
    let stamp = FileStamp(st)
    let cached = (try? state?.cachedHash(stamp)) ?? nil
    var digests = (sha256: cached?.sha256, gitSHA1: cached?.gitSHA1)
    let missingSHA = wantSHA && digests.sha256 == nil
    let missingSHA1 = wantSHA1 && digests.gitSHA1 == nil
    guard missingSHA || missingSHA1 else { return digests }
    let computed = try fileSystem.hash(path, sha256: missingSHA, gitSHA1: missingSHA1)
    digests.sha256 = computed.sha256 ?? digests.sha256
    digests.gitSHA1 = computed.gitSHA1 ?? digests.gitSHA1
    try? state?.storeHash(stamp, sha256: computed.sha256, gitSHA1: computed.gitSHA1)
    return digests
}
