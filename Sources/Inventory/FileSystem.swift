import Crypto
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// What `lstat`/`stat` say about a path.
public struct FileStatus: Hashable, Sendable {
    public enum Kind: Sendable, Hashable { case file, directory, symlink, other }
    public var kind: Kind
    public var size: Int64
    public var device: UInt64
    public var inode: UInt64
    public var mtimeNanoseconds: Int64
}

/// The file-system effects the inventory needs; tests substitute a fake.
public protocol FileSystem: Sendable {
    /// Status of the path itself (a symlink is reported as a symlink); nil when absent.
    func lstat(_ path: String) -> FileStatus?
    /// Status after following symlinks; nil when absent or dangling.
    func stat(_ path: String) -> FileStatus?
    func readlink(_ path: String) -> String?
    /// Hashes a regular file; only the requested digests are computed, in one read.
    func hash(_ path: String, sha256: Bool, gitSHA1: Bool) throws -> (sha256: String?, gitSHA1: String?)
    /// The first `count` bytes of a file (fewer only when it is shorter).
    func readPrefix(_ path: String, count: Int) throws -> [UInt8]
    /// Free bytes and identity of the filesystem holding `path` (or its nearest existing parent).
    func filesystem(of path: String) -> (id: String, mountPoint: String, freeBytes: Int64)?
    /// Why this user cannot create files in the folder `path` (or in its nearest existing
    /// parent, where apply would create it), and which folder that is; nil when it can.
    func writeProblem(folder path: String) -> (folder: String, reason: String)?
}

extension FileSystem {
    public func writeProblem(folder path: String) -> (folder: String, reason: String)? {
        LocalFileSystem.writeProblem(folder: path)
    }

    /// The real file's bytes: a fake that only changes stats or hashing reads the disk here.
    public func readPrefix(_ path: String, count: Int) throws -> [UInt8] {
        try LocalFileSystem.readPrefix(path, count: count)
    }
}

public struct HashError: Error, CustomStringConvertible {
    public var path: String
    /// `strerror`'s text.
    public var reason: String
    public init(path: String, reason: String) {
        self.path = path
        self.reason = reason
    }
    public var description: String { "cannot read \(path) to hash it: \(reason)" }
}

/// The real file system through POSIX calls.
public struct LocalFileSystem: FileSystem {
    /// access(2) for writing and entering the nearest existing folder: the kernel's own answer
    /// for this user (a read-only mount included; root may write anywhere else).
    public static func writeProblem(folder path: String) -> (folder: String, reason: String)? {
        var folder = path
        while !folder.isEmpty && folder != "/" && access(folder, F_OK) != 0 {
            folder = (folder as NSString).deletingLastPathComponent
        }
        if folder.isEmpty { folder = "." }
        guard access(folder, W_OK | X_OK) != 0 else { return nil }
        let code = errno
        return (folder, code == EROFS ? "\(folder) is on a read-only filesystem"
                    : "\(folder) is not writable by this user (\(String(cString: strerror(code)).lowercased()))")
    }
    /// 4 MiB reads: within the 1–8 MiB range that lets SHA-NI reach ~2 GB/s (swift-on-linux.md §6).
    public static let chunkSize = 4 << 20

    public init() {}

    static func convert(_ st: stat) -> FileStatus {
        let mode = st.st_mode & S_IFMT
        let kind: FileStatus.Kind = mode == S_IFREG ? .file : mode == S_IFDIR ? .directory : mode == S_IFLNK ? .symlink : .other
        return FileStatus(kind: kind, size: Int64(st.st_size), device: UInt64(st.st_dev), inode: UInt64(st.st_ino),
                          mtimeNanoseconds: Int64(st.st_mtim.tv_sec) * 1_000_000_000 + Int64(st.st_mtim.tv_nsec))
    }

    public func lstat(_ path: String) -> FileStatus? {
        var st = Glibc.stat()
        guard Glibc.lstat(path, &st) == 0 else { return nil }
        return Self.convert(st)
    }

    public func stat(_ path: String) -> FileStatus? {
        var st = Glibc.stat()
        guard sysStat(path, &st) == 0 else { return nil }
        return Self.convert(st)
    }

    public func readlink(_ path: String) -> String? {
        try? FileManager.default.destinationOfSymbolicLink(atPath: path)
    }

    public func hash(_ path: String, sha256 wantSHA: Bool, gitSHA1 wantSHA1: Bool) throws -> (sha256: String?, gitSHA1: String?) {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw HashError(path: path, reason: String(cString: strerror(errno))) }
        defer { close(fd) }
        var st = Glibc.stat()
        guard fstat(fd, &st) == 0 else { throw HashError(path: path, reason: String(cString: strerror(errno))) }
        _ = posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL)
        var sha = SHA256()
        var sha1 = Insecure.SHA1()
        if wantSHA1 { sha1.update(data: Array("blob \(st.st_size)\0".utf8)) }
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: Self.chunkSize, alignment: 4096)
        defer { buffer.deallocate() }
        while true {
            let n = read(fd, buffer.baseAddress, Self.chunkSize)
            if n < 0 {
                if errno == EINTR { continue }
                throw HashError(path: path, reason: String(cString: strerror(errno)))
            }
            if n == 0 { break }
            let chunk = UnsafeRawBufferPointer(rebasing: buffer[0..<n])
            if wantSHA { sha.update(bufferPointer: chunk) }
            if wantSHA1 { sha1.update(bufferPointer: chunk) }
        }
        return (wantSHA ? hexString(sha.finalize()) : nil, wantSHA1 ? hexString(sha1.finalize()) : nil)
    }

    public func readPrefix(_ path: String, count: Int) throws -> [UInt8] {
        try Self.readPrefix(path, count: count)
    }

    static func readPrefix(_ path: String, count: Int) throws -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw HashError(path: path, reason: String(cString: strerror(errno))) }
        defer { close(fd) }
        var out = [UInt8](repeating: 0, count: count)
        var filled = 0
        while filled < count {
            let n = out.withUnsafeMutableBytes { read(fd, $0.baseAddress! + filled, count - filled) }
            if n < 0 {
                if errno == EINTR { continue }
                throw HashError(path: path, reason: String(cString: strerror(errno)))
            }
            if n == 0 { break }
            filled += n
        }
        return Array(out.prefix(filled))
    }

    public func filesystem(of path: String) -> (id: String, mountPoint: String, freeBytes: Int64)? {
        var p = path
        while !p.isEmpty {
            var st = Glibc.stat()
            if sysStat(p, &st) == 0 {
                var vfs = statvfs()
                guard statvfs(p, &vfs) == 0 else { return nil }
                let free = Int64(vfs.f_bavail) * Int64(vfs.f_frsize)
                return ("dev:\(st.st_dev)", mountPoint(of: p, device: UInt64(st.st_dev)), free)
            }
            let parent = (p as NSString).deletingLastPathComponent
            if parent == p { break }
            p = parent
        }
        return nil
    }

    /// The topmost ancestor on the same device: the mount point, for display.
    func mountPoint(of path: String, device: UInt64) -> String {
        var current = (path as NSString).standardizingPath
        while current != "/" {
            let parent = (current as NSString).deletingLastPathComponent
            guard let st = stat(parent), st.device == device else { return current }
            current = parent
        }
        return "/"
    }
}

/// `stat(2)`; a free function because `LocalFileSystem.stat` shadows the C name inside the type.
private func sysStat(_ path: String, _ buf: UnsafeMutablePointer<stat>) -> Int32 {
    stat(path, buf)
}

/// Lower-case hexadecimal of a digest's bytes.
public func hexString<D: Sequence>(_ digest: D) -> String where D.Element == UInt8 {
    let digits = Array("0123456789abcdef".utf8)
    var out = [UInt8]()
    out.reserveCapacity(64)
    for b in digest {
        out.append(digits[Int(b >> 4)])
        out.append(digits[Int(b & 0xF)])
    }
    return String(decoding: out, as: UTF8.self)
}
