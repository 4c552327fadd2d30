import Foundation
import Synchronization

/// A per-host circuit breaker shared by every request of a run (the queue's workers included):
/// after `threshold` connection failures in a row to one origin, that origin is not tried again
/// in this run. When the Hub is down, the jobs that need it then fail at once with one clear
/// reason, instead of each retrying with backoff for minutes while the rest of the work waits.
/// Any answer from the host (whatever its status) closes the count again.
public final class HostBreaker: Sendable {
    public let threshold: Int
    private let failures = Mutex<[String: Int]>([:])

    public init(threshold: Int = 3) { self.threshold = max(1, threshold) }

    /// True when `origin` failed `threshold` times in a row and is not tried any more.
    public func isOpen(_ origin: String) -> Bool {
        failures.withLock { ($0[origin] ?? 0) >= threshold }
    }

    /// Throws the one "stops trying" error once `origin` is given up on.
    public func check(_ origin: String) throws {
        if isOpen(origin) { throw HubError.hostDown(origin: displayURL(origin), failures: threshold) }
    }

    /// Counts a failed connection; true when this one opened the breaker for `origin`.
    @discardableResult
    public func recordFailure(_ origin: String) -> Bool {
        failures.withLock { f in
            let before = f[origin] ?? 0
            f[origin] = before + 1
            return before + 1 == threshold
        }
    }

    /// An answer came: the host is up.
    public func recordAnswer(_ origin: String) {
        failures.withLock { f in
            if (f[origin] ?? 0) < threshold { f[origin] = nil }
        }
    }

    /// The origins given up on, sorted.
    public var openOrigins: [String] {
        failures.withLock { f in f.filter { $0.value >= threshold }.map(\.key).sorted() }
    }
}
