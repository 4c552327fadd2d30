import Crypto
import Foundation
import HubClient
import Inventory
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Writes and hashes a stream on two threads of its own, so that receiving, writing and hashing
/// all overlap: the transfer thread only copies each chunk into one of a few fixed buffers and
/// moves on; a writer and a hasher then both read that buffer, side by side. Each stage is a
/// serial queue, so writes land in order and the hash sees the bytes in order. A slot returns to
/// the free list only when both stages are done with it. Memory stays bounded (slots x slot size).
///
/// Why two stages rather than one: on the machines measured (BENCHMARKS.md) write(2) into fresh
/// page-cache pages is the slowest step, and SHA-256 costs about as much again; done one after
/// the other on one thread they made wgpm slower than `curl -o`, which only writes.
final class HashPipeline: Sendable {
    static let slotSize = 1 << 20
    private let writer = DispatchQueue(label: "wgpm.write")
    private let hasher = DispatchQueue(label: "wgpm.hash")
    private let free: DispatchSemaphore
    /// The slots' one mapping, as an address: a pointer is not Sendable, the bytes it names are
    /// handed from stage to stage under `slots`' reader counts.
    private let region: UInt
    private let regionSize: Int
    private let wantSHA1: Bool
    private let sha1Prefix: [UInt8]
    static let writebackBatch = 32 << 20

    /// What the stages share: the free slots, the stages still reading each slot, and errno of
    /// a failed write on the writer thread (reported on the next feed or drain).
    private struct Slots {
        var free: [Int]
        var readers: [Int]
        var writeError: Int32 = 0
    }
    private let slots: Mutex<Slots>
    /// The running digests: touched on the hasher queue only (the lock is never contended).
    private struct Digests {
        var sha = SHA256()
        var sha1 = Insecure.SHA1()
    }
    private let digest = Mutex(Digests())
    /// Bytes written since write-back was last started: the writer queue's only.
    private let unflushed = Mutex(0)
    /// The slot being filled, the descriptor its bytes go to and how much of it is used: the
    /// feeding thread's only. Chunks from curl are gathered into full slots so the other
    /// threads are woken once per MiB, not once per network read.
    private struct Filling {
        var slot: Int?
        var fd: Int32 = -1
        var filled = 0
    }
    private let filling = Mutex(Filling())

    /// Six slots of 1 MiB: eight were no faster for one 2 GiB file and cost the set of two
    /// concurrent files 4 MiB of peak memory (BENCHMARKS.md, session 9); four were slower.
    init(slots count: Int = 6, gitSHA1Size: Int64?) throws {
        // One mapping for all slots, unmapped in deinit: malloc would keep freed 1 MiB blocks in
        // its arenas, and a run of many files would grow the process a pipeline per file.
        let mapped = mmap(nil, count * Self.slotSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
        guard let mapped, mapped != UnsafeMutableRawPointer(bitPattern: -1) else { throw WriteFailure(code: ENOMEM) }
        free = DispatchSemaphore(value: count)
        region = UInt(bitPattern: mapped)
        regionSize = count * Self.slotSize
        slots = Mutex(Slots(free: Array(0..<count), readers: Array(repeating: 0, count: count)))
        wantSHA1 = gitSHA1Size != nil
        sha1Prefix = gitSHA1Size.map { Array("blob \($0)\0".utf8) } ?? []
        reset()
    }

    deinit {
        // Every block queued on the writer or the hasher holds `self`, so when this runs none is
        // queued or running and every slot they read is back; only the one being filled is not.
        // (No `sync` on the queues here: the last reference may be dropped by a block as it is
        // released on the hasher's own thread, and a sync there would deadlock — seen as a trap.)
        // Every slot must be back before the semaphore goes: libdispatch traps when a semaphore
        // is released with a count below the one it was created with.
        if filling.withLock({ $0.slot }) != nil { free.signal() }
        munmap(UnsafeMutableRawPointer(bitPattern: region), regionSize)
    }

    private func buffer(_ slot: Int) -> UnsafeMutableRawPointer {
        UnsafeMutableRawPointer(bitPattern: region)! + slot * Self.slotSize
    }

    func reset() {
        let dropped = filling.withLock { f -> Int? in  // drop what was gathered for the old stream
            defer { f = Filling() }
            return f.slot
        }
        if let dropped {
            slots.withLock { $0.free.append(dropped) }
            free.signal()
        }
        writer.sync {
            slots.withLock { $0.writeError = 0 }
            unflushed.withLock { $0 = 0 }
        }
        hasher.sync {
            digest.withLock { d in
                d = Digests()
                if wantSHA1 { d.sha1.update(data: sha1Prefix) }
            }
        }
    }

    private var writeError: Int32? { slots.withLock { $0.writeError != 0 ? $0.writeError : nil } }

    /// Takes a chunk; with `fd`, the chunk is also written to it (in order, on the writer thread).
    func feed(_ bytes: UnsafeRawBufferPointer, writeTo fd: Int32 = -1) throws {
        if let e = writeError { throw WriteFailure(code: e) }
        if filling.withLock({ $0.slot != nil && $0.fd != fd }) { flush() }
        filling.withLock { $0.fd = fd }
        var offset = 0
        while offset < bytes.count {
            if filling.withLock({ $0.slot == nil }) {
                free.wait()
                let slot = slots.withLock { $0.free.removeLast() }
                filling.withLock { $0.slot = slot; $0.filled = 0 }
            }
            let full = filling.withLock { f -> Bool in
                let n = min(Self.slotSize - f.filled, bytes.count - offset)
                (buffer(f.slot!) + f.filled).copyMemory(from: bytes.baseAddress! + offset, byteCount: n)
                f.filled += n
                offset += n
                return f.filled == Self.slotSize
            }
            if full { flush() }
        }
    }

    /// Called by a stage when it has finished reading `slot`; the last one frees it.
    private func done(with slot: Int) {
        let last = slots.withLock {
            $0.readers[slot] -= 1
            if $0.readers[slot] == 0 { $0.free.append(slot); return true }
            return false
        }
        if last { free.signal() }
    }

    /// Hands the partly filled slot to the writer and the hasher.
    private func flush() {
        let taken = filling.withLock { f -> (slot: Int, n: Int, fd: Int32)? in
            guard let slot = f.slot else { return nil }
            defer { f.slot = nil; f.filled = 0 }
            return (slot, f.filled, f.fd)
        }
        guard let (slot, n, fd) = taken else { return }
        slots.withLock { $0.readers[slot] = fd >= 0 ? 2 : 1 }
        if fd >= 0 {
            writer.async { [self] in
                let base = buffer(slot)
                var written = 0
                // After a failed write nothing more is written: the stream already has a hole.
                while written < n && writeError == nil {
                    let w = Glibc.write(fd, base + written, n - written)
                    if w < 0 {
                        if errno == EINTR { continue }
                        let e = errno
                        slots.withLock { if $0.writeError == 0 { $0.writeError = e } }
                        break
                    }
                    written += w
                }
                let batchDone = unflushed.withLock { u -> Bool in
                    u += written
                    guard u >= Self.writebackBatch else { return false }
                    u = 0
                    return true
                }
                if batchDone { startWriteback(fd) }
                done(with: slot)
            }
        }
        hasher.async { [self] in
            let chunk = UnsafeRawBufferPointer(start: buffer(slot), count: n)
            digest.withLock { d in
                d.sha.update(bufferPointer: chunk)
                if wantSHA1 { d.sha1.update(bufferPointer: chunk) }
            }
            done(with: slot)
        }
    }

    /// Waits until everything fed is written and hashed; throws a write error that happened.
    func drain() throws {
        flush()
        writer.sync {}
        hasher.sync {}
        if let e = writeError { throw WriteFailure(code: e) }
    }

    /// Waits for every fed chunk, then returns the digests of everything fed since the last reset.
    func digests() -> (sha256: String, gitSHA1: String?) {
        flush()
        writer.sync {}
        return hasher.sync {
            digest.withLock { d in (hexString(d.sha.finalize()), wantSHA1 ? hexString(d.sha1.finalize()) : nil) }
        }
    }
}

/// A byte count one thread sets and any thread reads (a partial file's length for progress).
final class ByteGauge: Sendable {
    private let value = Atomic<Int64>(0)
    var current: Int64 { value.load(ordering: .relaxed) }
    func set(_ bytes: Int64) { value.store(bytes, ordering: .relaxed) }
}

/// `sync_file_range(2)`, looked up at run time: Glibc's Swift module leaves out the GNU
/// extensions of <fcntl.h>.
typealias SyncFileRange = @convention(c) (Int32, Int64, Int64, UInt32) -> Int32
let syncFileRange: SyncFileRange? = dlsym(nil, "sync_file_range").map { unsafeBitCast($0, to: SyncFileRange.self) }

/// Starts write-back of the file's dirty pages after waiting for the batch started last time
/// (SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE). The disk then writes while the
/// network delivers, the fsync before the rename has at most one batch left to flush instead of
/// the whole file, and dirty memory stays near two batches rather than a share of the RAM.
/// Errors are ignored here: the fsync that follows reports them.
private func startWriteback(_ fd: Int32) {
    _ = syncFileRange?(fd, 0, 0, 1 | 2)
}

/// errno of a failed write(2) on the pipeline's writer thread.
struct WriteFailure: Error {
    var code: Int32
}

/// The partial file of one download: written with write(2) and hashed as it grows (on
/// pipeline threads), so the final check needs no second read. On resume the bytes already on
/// disk are hashed first.
///
/// Its folder is wgpm's own, but anything may have been planted there: the file is opened with
/// `O_NOFOLLOW` and must be a regular file with one link, or it is unlinked (only the name,
/// never what it pointed at) and created afresh.
///
/// The first `ContentFormat.prefixLength` bytes of the file are held back until they can be
/// judged against the file's format; bytes that cannot start it are refused (`ContentRejected`)
/// and never written.
/// Used by one thread at a time: the transfer that owns it (curl calls back on that thread), so
/// it is not Sendable; only `gauge` is read elsewhere.
final class PartialFile: TransferSink {
    let path: String
    let fd: Int32
    let expectedSize: Int64?
    /// The name whose extension says which format the content must have; nil: not judged.
    let formatName: String?
    private(set) var length: Int64 = 0 { didSet { gauge.set(length) } }
    /// `length`, for progress reports on other threads.
    let gauge = ByteGauge()
    /// What this run wrote (a resumed download counts only what it fetched; a restart from 0
    /// counts what it fetches again).
    private(set) var fetched: Int64 = 0
    private let hasher: HashPipeline
    /// The error of the last failed local write, for the caller to report as it is.
    private(set) var failure: ExecutorError?
    /// The start of the file while it is being judged (only when `length` is 0).
    private var head: [UInt8] = []

    /// The folder the file is named in (a descriptor of its own, or AT_FDCWD) and its name
    /// there: removing and renaming go through these, not through `path` again.
    let folder: Int32
    let name: String

    /// `folder`: a descriptor of the partial folder (duplicated here), or nil for a plain path.
    init(path: String, in folder: Int32? = nil, expectedSize: Int64?, wantGitSHA1: Bool, formatName: String? = nil) throws {
        self.path = path
        self.expectedSize = expectedSize
        self.formatName = formatName
        self.folder = folder.map { dup($0) } ?? AT_FDCWD
        name = folder == nil ? path : (path as NSString).lastPathComponent
        do { hasher = try HashPipeline(gitSHA1Size: wantGitSHA1 ? expectedSize : nil) } catch let f as WriteFailure {
            throw ExecutorError.posix(path: path, code: f.code, doing: "prepare")
        }
        fd = try Self.openOwn(self.folder, name, path: path)
        var st = stat()
        fstat(fd, &st)
        if let expectedSize, Int64(st.st_size) > expectedSize {
            try restart()  // longer than the file can be: not this content
        } else if try !startIsAcceptable(Int64(st.st_size)) {
            try restart()  // an earlier run kept bytes that cannot start this file
        } else {
            try absorbExisting(Int64(st.st_size))
        }
    }

    deinit {
        try? hasher.drain()  // queued writes go to this descriptor: finish them before closing it
        close(fd)
        if folder != AT_FDCWD { close(folder) }
    }

    /// Removes the partial file's name (a failed verification: never resumed).
    func remove() { unlinkat(folder, name, 0) }

    static func openOwn(_ folder: Int32, _ name: String, path: String) throws -> Int32 {
        let fd = openOwnFile(name, in: folder)
        guard fd >= 0 else {
            if fd == -2 { throw ExecutorError.cannotWrite(path: path, reason: "something keeps replacing this partial file with a link or special file; check who writes to that folder") }
            throw ExecutorError.posix(path: path, code: errno, doing: "open")
        }
        return fd
    }

    /// Whether the `size` bytes already on disk may be continued: empty, or a start that the
    /// format accepts (shorter starts are dropped: cheaper than judging them later).
    private func startIsAcceptable(_ size: Int64) throws -> Bool {
        guard size > 0, let formatName else { return true }
        guard size >= Int64(ContentFormat.prefixLength) || size == expectedSize else { return false }
        var buffer = [UInt8](repeating: 0, count: ContentFormat.prefixLength)
        let n = pread(fd, &buffer, buffer.count, 0)
        guard n > 0 else { return false }
        return ContentFormat.problem(prefix: buffer[0..<n], name: formatName) == nil
    }

    /// Hashes what an earlier run left, so the stream can continue after it.
    private func absorbExisting(_ size: Int64) throws {
        hasher.reset()
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 4 << 20, alignment: 4096)
        defer { buffer.deallocate() }
        lseek(fd, 0, SEEK_SET)
        var done: Int64 = 0
        while done < size {
            let n = read(fd, buffer.baseAddress, min(buffer.count, Int(size - done)))
            if n < 0 { if errno == EINTR { continue }; throw ExecutorError.posix(path: path, code: errno, doing: "read") }
            if n == 0 { break }
            try feed(UnsafeRawBufferPointer(rebasing: buffer[0..<n]), write: false)
            done += Int64(n)
        }
        _ = hasher.digests()  // wait: the buffer is reused below
        length = done
        lseek(fd, off_t(done), SEEK_SET)
        // digests() finalized copies of the running state; feeding continues from the same state.
    }

    func restart() throws {
        hasher.reset()  // first: pending writes must not land after the truncation
        head = []
        guard ftruncate(fd, 0) == 0 else { throw ExecutorError.posix(path: path, code: errno, doing: "truncate") }
        lseek(fd, 0, SEEK_SET)
        length = 0
    }

    private var judging: Bool { formatName != nil && length == 0 }

    func write(_ bytes: UnsafeRawBufferPointer) throws {
        guard judging, bytes.count > 0 else { return try feed(bytes, write: true) }
        let take = min(ContentFormat.prefixLength - head.count, bytes.count)
        head += bytes[0..<take]
        let whole = expectedSize.map { Int64(head.count) >= $0 } ?? false
        guard head.count >= ContentFormat.prefixLength || whole else { return }
        try judgeHead()
        if take < bytes.count { try feed(UnsafeRawBufferPointer(rebasing: bytes[take...]), write: true) }
    }

    /// Judges and writes held-back starting bytes at the end of a transfer (a file shorter
    /// than the prefix, or a connection that ended early). Throws `ContentRejected`.
    func settle() throws {
        if judging && !head.isEmpty { try judgeHead() }
    }

    private func judgeHead() throws {
        let start = head
        head = []
        if let formatName, let problem = ContentFormat.problem(prefix: start, name: formatName) {
            throw ContentRejected("the server sent bytes that cannot start \(formatName): \(problem)")
        }
        try start.withUnsafeBytes { try feed($0, write: true) }
    }

    private func feed(_ bytes: UnsafeRawBufferPointer, write: Bool) throws {
        do {
            try hasher.feed(bytes, writeTo: write ? fd : -1)
        } catch let f as WriteFailure {
            let error = ExecutorError.posix(path: path, code: f.code, doing: "write")
            failure = error
            throw error
        }
        if write {
            length += Int64(bytes.count)
            fetched += Int64(bytes.count)
        }
    }

    func digests() -> (sha256: String, gitSHA1: String?) { hasher.digests() }

    func sync() throws {
        do { try hasher.drain() } catch let f as WriteFailure { throw ExecutorError.posix(path: path, code: f.code, doing: "write") }
        guard fsync(fd) == 0 else { throw ExecutorError.posix(path: path, code: errno, doing: "flush") }
    }
}

/// Opens (creating when needed) a regular file with a single link at `path` in a folder of
/// wgpm's own, refusing to follow a symlink or write through a hard link planted at that name:
/// such an entry is unlinked (only the name, never what it pointed at) and the file created
/// afresh. Returns the descriptor; -1 with errno set on an error, -2 when the name kept being
/// replaced.
func openOwnFile(_ name: String, in folder: Int32 = AT_FDCWD) -> Int32 {
    for _ in 0..<3 {
        let fd = openat(folder, name, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK, 0o644)
        if fd < 0 {
            if errno == ELOOP { unlinkat(folder, name, 0); continue }
            return -1
        }
        var st = stat()
        if fstat(fd, &st) == 0, st.st_mode & S_IFMT == S_IFREG, st.st_nlink == 1 { return fd }
        close(fd)
        unlinkat(folder, name, 0)  // a FIFO, device or hard link to someone else's file: not ours to write
    }
    return -2
}

/// fsync of an open directory, so a rename inside it survives a crash.
func syncDirectory(_ fd: Int32) { fsync(fd) }

/// fsync of a directory, so a rename inside it survives a crash.
func syncDirectory(_ path: String) {
    let fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
    if fd >= 0 { fsync(fd); close(fd) }
}


