import Foundation
import Inventory
import Planner
#if canImport(Glibc)
import Glibc
#endif

/// Places local content at a target as a symlink, hardlink or copy: always made under a
/// temporary name in the target's folder and renamed over the target, so the target is
/// either the old entry or the complete new one.
public struct Linker: Sendable {
    public var fileSystem: FileSystem

    public init(fileSystem: FileSystem = LocalFileSystem()) {
        self.fileSystem = fileSystem
    }

    public func run(_ spec: JobSpec) throws {
        guard let source = spec.linkFrom else { throw ExecutorError.gaveUp(path: spec.path, reason: "no source") }
        guard let st = fileSystem.stat(source), st.kind == .file else {
            throw ExecutorError.sourceVanished(path: spec.path, source: source)
        }
        if let size = spec.size, st.size != size {
            throw ExecutorError.sizeMismatch(path: spec.path, expected: size, actual: st.size)
        }
        // Content that was matched by URL or name is checked now when a hash is known.
        if spec.basis != "sha256", let expected = spec.sha256 {
            let actual = try fileSystem.hash(source, sha256: true, gitSHA1: false).sha256 ?? ""
            if actual != expected { throw ExecutorError.verificationFailed(path: spec.path, expected: expected, actual: actual) }
        }
        let dir = (spec.target as NSString).deletingLastPathComponent
        try makeDirectories(dir, for: spec.path)
        let tmp = dir + "/.wgpm-tmp-\(getpid())-" + (spec.target as NSString).lastPathComponent
        unlink(tmp)
        switch spec.linkMode ?? .symlink {
        case .symlink:
            guard symlink(source, tmp) == 0 else { throw ExecutorError.cannotWrite(path: spec.path, reason: String(cString: strerror(errno))) }
        case .hardlink:
            if link(source, tmp) != 0 {
                if errno == EXDEV { throw ExecutorError.crossDevice(path: spec.path, source: source) }
                throw ExecutorError.cannotWrite(path: spec.path, reason: String(cString: strerror(errno)))
            }
        case .copy:
            try copyFile(source, tmp, path: spec.path)
        }
        guard rename(tmp, spec.target) == 0 else {
            let reason = String(cString: strerror(errno))
            unlink(tmp)
            throw ExecutorError.cannotWrite(path: spec.path, reason: reason)
        }
        syncDirectory(dir)
    }

    func copyFile(_ from: String, _ to: String, path: String) throws {
        let input = open(from, O_RDONLY | O_CLOEXEC)
        guard input >= 0 else { throw ExecutorError.sourceVanished(path: path, source: from) }
        defer { close(input) }
        let output = open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard output >= 0 else { throw ExecutorError.cannotWrite(path: path, reason: String(cString: strerror(errno))) }
        defer { close(output) }
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: 4 << 20, alignment: 4096)
        defer { buffer.deallocate() }
        while true {
            let n = read(input, buffer, 4 << 20)
            if n < 0 { if errno == EINTR { continue }; throw ExecutorError.sourceVanished(path: path, source: from) }
            if n == 0 { break }
            var off = 0
            while off < n {
                let w = write(output, buffer + off, n - off)
                if w < 0 { if errno == EINTR { continue }; unlink(to); throw ExecutorError.cannotWrite(path: path, reason: String(cString: strerror(errno))) }
                off += w
            }
        }
        guard fsync(output) == 0 else { unlink(to); throw ExecutorError.cannotWrite(path: path, reason: String(cString: strerror(errno))) }
    }
}
