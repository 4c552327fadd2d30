import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// One process at a time runs the queue: an fcntl lock on `<state>/queue.lock`.
///
/// fcntl locks are released by the kernel when the process dies (even with `kill -9`), so a
/// crashed apply never leaves a stale lock. The state directory belongs on a local disk.
public final class QueueLock: @unchecked Sendable {
    public let path: String
    private var fd: Int32 = -1

    public init(stateDirectory: String) {
        path = stateDirectory + "/queue.lock"
    }

    public enum LockError: Error, CustomStringConvertible {
        case timeout(path: String, holder: String?)
        case cannotOpen(path: String, reason: String)
        public var description: String {
            switch self {
            case .timeout(let path, let holder):
                return "another wgpm (\(holder ?? "unknown process")) is running the queue (lock \(path)); gave up waiting. Try again when it has finished, or raise --lock-timeout."
            case .cannotOpen(let path, let reason):
                return "cannot open the lock file \(path): \(reason)"
            }
        }
    }

    /// Takes the lock, waiting up to `timeout` seconds (nil = as long as it takes).
    /// `onWait` is called once, when the lock is found taken.
    public func acquire(timeout: Double?, onWait: (String?) -> Void) throws {
        fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw LockError.cannotOpen(path: path, reason: String(cString: strerror(errno))) }
        let deadline = timeout.map { Date().addingTimeInterval($0) }
        var told = false
        while true {
            var fl = flock()
            fl.l_type = Int16(F_WRLCK)
            fl.l_whence = Int16(SEEK_SET)
            if fcntl(fd, F_SETLK, &fl) == 0 {
                let text = "pid \(getpid())\n"
                _ = ftruncate(fd, 0)
                _ = pwrite(fd, text, text.utf8.count, 0)
                return
            }
            let holder = holderDescription()
            if !told { onWait(holder); told = true }
            if let deadline, Date() >= deadline {
                close(fd)
                fd = -1
                throw LockError.timeout(path: path, holder: holder)
            }
            Thread.sleep(forTimeInterval: 0.2)
        }
    }

    func holderDescription() -> String? {
        var fl = flock()
        fl.l_type = Int16(F_WRLCK)
        fl.l_whence = Int16(SEEK_SET)
        guard fcntl(fd, F_GETLK, &fl) == 0, fl.l_type != Int16(F_UNLCK) else { return nil }
        return "pid \(fl.l_pid)"
    }

    public func release() {
        guard fd >= 0 else { return }
        close(fd)  // closing drops the fcntl lock
        fd = -1
    }

    deinit { release() }
}
