import Foundation
import Planner
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// An exclusive fcntl lock on one file, held by this process.
///
/// fcntl locks are released by the kernel when the process dies (even with `kill -9`), so a
/// crashed apply never leaves a stale lock. The lock file is opened with `O_NOFOLLOW`: a
/// symlink planted in its place is refused, never followed and truncated.
public final class ProcessLock: Sendable {
    public let path: String
    /// What holding the lock means, for messages ("the queue", "ckpts").
    public let what: String
    /// The open lock file, -1 when not open.
    private let descriptor = Mutex<Int32>(-1)
    private var fd: Int32 {
        get { descriptor.withLock { $0 } }
        set { descriptor.withLock { $0 = newValue } }
    }

    public init(path: String, what: String) {
        self.path = path
        self.what = what
    }

    public enum LockError: Error, CustomStringConvertible {
        case timeout(path: String, what: String, holder: String?)
        case cannotOpen(path: String, reason: String)
        public var description: String {
            switch self {
            case .timeout(let path, let what, let holder):
                return "another wgpm (\(holder ?? "unknown process")) is writing \(what) (lock \(path)); gave up waiting. Try again when it has finished, or raise --lock-timeout."
            case .cannotOpen(let path, let reason):
                return "cannot open the lock file \(path): \(reason). Check that its folder is writable."
            }
        }
    }

    /// Takes the lock if it is free; false when another process holds it.
    public func tryAcquire(note: String = "") throws -> Bool {
        if fd < 0 {
            // The lock file is truncated and rewritten below: it must be wgpm's own regular file,
            // not a symlink or hard link planted to make that truncation land elsewhere.
            fd = openOwnFile(path)  // a full path: relative to the working folder
            guard fd >= 0 else {
                let reason = fd == -2 ? "it keeps being replaced by a link or special file" : String(cString: strerror(errno))
                fd = -1
                throw LockError.cannotOpen(path: path, reason: reason)
            }
        }
        var fl = flock()
        fl.l_type = Int16(F_WRLCK)
        fl.l_whence = Int16(SEEK_SET)
        guard fcntl(fd, F_SETLK, &fl) == 0 else { return false }
        let text = "pid \(getpid())\(note.isEmpty ? "" : " \(note)")\n"
        _ = ftruncate(fd, 0)
        _ = pwrite(fd, text, text.utf8.count, 0)
        return true
    }

    /// Takes the lock, waiting up to `timeout` seconds (nil = as long as it takes).
    /// `onWait` is called once, when the lock is found taken.
    /// `shouldStop` is asked while waiting (Ctrl-C); when it says so, `cancelled` is thrown.
    public func acquire(timeout: Double?, note: String = "", shouldStop: () -> Bool = { false },
                        onWait: (String?) -> Void) throws {
        let deadline = timeout.map { Date().addingTimeInterval($0) }
        var told = false
        while true {
            if try tryAcquire(note: note) { return }
            if shouldStop() { release(); throw ExecutorError.cancelled }
            let holder = holderDescription()
            if !told { onWait(holder); told = true }
            if let deadline, Date() >= deadline {
                release()
                throw LockError.timeout(path: path, what: what, holder: holder)
            }
            Thread.sleep(forTimeInterval: 0.2)
        }
    }

    /// "pid N …" of the holder, from the kernel and the note it wrote.
    public func holderDescription() -> String? {
        guard fd >= 0 else { return nil }
        var fl = flock()
        fl.l_type = Int16(F_WRLCK)
        fl.l_whence = Int16(SEEK_SET)
        guard fcntl(fd, F_GETLK, &fl) == 0, fl.l_type != Int16(F_UNLCK) else { return nil }
        var buffer = [UInt8](repeating: 0, count: 512)
        let n = pread(fd, &buffer, buffer.count, 0)
        let text = n > 0 ? String(decoding: buffer[0..<n], as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines) : ""
        return text.hasPrefix("pid \(fl.l_pid)") ? text : "pid \(fl.l_pid)"
    }

    public func release() {
        guard fd >= 0 else { return }
        close(fd)  // closing drops the fcntl lock
        fd = -1
    }

    deinit { release() }
}

/// Everything one queue runner must hold: the queue of its state directory, and each target
/// folder it writes (so two wgpm installs with different state directories never write the
/// same `ckpts/` at once). Taken in a fixed order — the queue, then folders sorted by path —
/// so two runners cannot each hold one and wait for the other.
public final class RunLocks: Sendable {
    public let queue: ProcessLock
    public let folders: [ProcessLock]
    let stateDirectory: String

    /// `folderLocks`: the lock file of each managed root, inside its `.wgpm-partial` folder.
    public init(stateDirectory: String, folderLocks: [(path: String, what: String)]) {
        self.stateDirectory = stateDirectory
        queue = ProcessLock(path: stateDirectory + "/queue.lock", what: "the queue of \(stateDirectory)")
        var seen: Set<String> = []
        folders = folderLocks.sorted { $0.path < $1.path }.filter { seen.insert($0.path).inserted }
            .map { ProcessLock(path: $0.path, what: $0.what) }
    }

    /// The lock files for the roots of `confinement`, creating their `.wgpm-partial` folders.
    public static func folderLocks(_ confinement: Confinement) throws -> [(path: String, what: String)] {
        var out: [(String, String)] = []
        // An older Wan2GP's root-level LoRA folders are locked when they exist; one that a job
        // creates is not (the download makes its partial folder itself).
        for (name, root) in confinement.mapper.roots
        where !legacyLoraRoots.contains(name) || FileManager.default.fileExists(atPath: root) {
            let folder = root + "/.wgpm-partial"
            try confinement.makeFolders(folder, for: "\(name)/.wgpm-partial")
            out.append((folder + "/.lock", root))
        }
        return out
    }

    /// The queue lock without waiting: false when another process runs this queue.
    public func tryQueue() throws -> Bool {
        try queue.tryAcquire(note: "state \(stateDirectory)")
    }

    public func acquireQueue(timeout: Double?, shouldStop: () -> Bool, onWait: (ProcessLock, String?) -> Void) throws {
        try queue.acquire(timeout: timeout, note: "state \(stateDirectory)", shouldStop: shouldStop) { onWait(queue, $0) }
    }

    /// The folder locks, after the queue lock is held.
    public func acquireFolders(timeout: Double?, shouldStop: () -> Bool, onWait: (ProcessLock, String?) -> Void) throws {
        for lock in folders {
            try lock.acquire(timeout: timeout, note: "state \(stateDirectory)", shouldStop: shouldStop) { onWait(lock, $0) }
        }
    }

    public func release() {
        for lock in folders.reversed() { lock.release() }
        queue.release()
    }
}
