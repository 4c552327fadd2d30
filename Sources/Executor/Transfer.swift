import Crypto
import Foundation
import HubClient
#if canImport(Glibc)
import Glibc
#endif

/// The partial file of one download: written with write(2), hashed as it grows, so the final
/// check needs no second read. On resume the bytes already on disk are hashed first.
/// Used by one thread at a time: the transfer that owns it (curl calls back on that thread).
final class PartialFile: TransferSink, @unchecked Sendable {
    let path: String
    let fd: Int32
    let expectedSize: Int64?
    private(set) var length: Int64 = 0
    private var sha = SHA256()
    private var sha1 = Insecure.SHA1()
    let wantSHA1: Bool

    init(path: String, expectedSize: Int64?, wantGitSHA1: Bool) throws {
        self.path = path
        self.expectedSize = expectedSize
        wantSHA1 = wantGitSHA1 && expectedSize != nil
        fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw ExecutorError.cannotWrite(path: path, reason: String(cString: strerror(errno))) }
        var st = stat()
        fstat(fd, &st)
        if let expectedSize, Int64(st.st_size) > expectedSize {
            try restart()  // longer than the file can be: not this content
        } else {
            try absorbExisting(Int64(st.st_size))
        }
    }

    deinit { close(fd) }

    private func resetHashes() {
        sha = SHA256()
        sha1 = Insecure.SHA1()
        if wantSHA1, let size = expectedSize { sha1.update(data: Array("blob \(size)\0".utf8)) }
    }

    /// Hashes what an earlier run left, so the stream can continue after it.
    private func absorbExisting(_ size: Int64) throws {
        resetHashes()
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 4 << 20, alignment: 4096)
        defer { buffer.deallocate() }
        lseek(fd, 0, SEEK_SET)
        var done: Int64 = 0
        while done < size {
            let n = read(fd, buffer.baseAddress, min(buffer.count, Int(size - done)))
            if n < 0 { if errno == EINTR { continue }; throw ExecutorError.cannotWrite(path: path, reason: String(cString: strerror(errno))) }
            if n == 0 { break }
            let chunk = UnsafeRawBufferPointer(rebasing: buffer[0..<n])
            sha.update(bufferPointer: chunk)
            if wantSHA1 { sha1.update(bufferPointer: chunk) }
            done += Int64(n)
        }
        length = done
        lseek(fd, off_t(done), SEEK_SET)
    }

    func restart() throws {
        guard ftruncate(fd, 0) == 0 else { throw ExecutorError.cannotWrite(path: path, reason: String(cString: strerror(errno))) }
        lseek(fd, 0, SEEK_SET)
        length = 0
        resetHashes()
    }

    func write(_ bytes: UnsafeRawBufferPointer) throws {
        var offset = 0
        while offset < bytes.count {
            let n = Glibc.write(fd, bytes.baseAddress! + offset, bytes.count - offset)
            if n < 0 {
                if errno == EINTR { continue }
                throw ExecutorError.cannotWrite(path: path, reason: String(cString: strerror(errno)))
            }
            offset += n
        }
        sha.update(bufferPointer: bytes)
        if wantSHA1 { sha1.update(bufferPointer: bytes) }
        length += Int64(bytes.count)
    }

    func digests() -> (sha256: String, gitSHA1: String?) {
        (hexString(sha.finalize()), wantSHA1 ? hexString(sha1.finalize()) : nil)
    }

    func sync() throws {
        guard fsync(fd) == 0 else { throw ExecutorError.cannotWrite(path: path, reason: String(cString: strerror(errno))) }
    }
}

func hexString<D: Sequence>(_ d: D) -> String where D.Element == UInt8 {
    d.map { String(format: "%02x", $0) }.joined()
}

/// fsync of a directory, so a rename inside it survives a crash.
func syncDirectory(_ path: String) {
    let fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
    if fd >= 0 { fsync(fd); close(fd) }
}

func makeDirectories(_ path: String, for target: String) throws {
    do {
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    } catch {
        let reason = (error as NSError).userInfo[NSUnderlyingErrorKey].map { "\($0)" } ?? error.localizedDescription
        throw ExecutorError.cannotWrite(path: target, reason: "cannot create \(path) (\(reason))")
    }
}
