import Foundation

/// Byte ranges `[start, end)` of one file: sorted, disjoint, and never touching (touching
/// ranges are merged), so two sets with the same bytes are equal.
struct ByteRanges: Equatable, Sendable {
    private(set) var ranges: [Range<Int64>] = []

    init(_ ranges: [Range<Int64>] = []) {
        for range in ranges { insert(range) }
    }

    mutating func insert(_ range: Range<Int64>) {
        guard !range.isEmpty else { return }
        var lower = range.lowerBound
        var upper = range.upperBound
        var merged: [Range<Int64>] = []
        var placed = false
        for existing in ranges {
            if existing.upperBound < lower {
                merged.append(existing)
            } else if existing.lowerBound > upper {
                if !placed { merged.append(lower..<upper); placed = true }
                merged.append(existing)
            } else {
                lower = min(lower, existing.lowerBound)
                upper = max(upper, existing.upperBound)
            }
        }
        if !placed { merged.append(lower..<upper) }
        ranges = merged
    }

    var total: Int64 { ranges.reduce(0) { $0 + ($1.upperBound - $1.lowerBound) } }

    /// The end of the run of bytes that starts at byte 0 (0 when byte 0 is missing).
    var prefix: Int64 { ranges.first.map { $0.lowerBound == 0 ? $0.upperBound : 0 } ?? 0 }

    /// What `[0, size)` lacks.
    func gaps(in size: Int64) -> [Range<Int64>] {
        var gaps: [Range<Int64>] = []
        var at: Int64 = 0
        for range in ranges where range.lowerBound < size {
            if range.lowerBound > at { gaps.append(at..<range.lowerBound) }
            at = max(at, range.upperBound)
        }
        if at < size { gaps.append(at..<size) }
        return gaps
    }

    /// The same ranges cut at `size`.
    func clipped(to size: Int64) -> ByteRanges {
        ByteRanges(ranges.compactMap { $0.lowerBound < size ? $0.lowerBound..<min($0.upperBound, size) : nil })
    }
}

/// Which connection fetches which bytes of one file, and what is written.
///
/// Each worker owns one assignment `[start, end)` and writes it in order: `[start, cursor)` is
/// written, `[cursor, reserved)` is being written now, `[reserved, end)` is still to come. A
/// worker that runs out of work takes the first `piece` of the first gap nobody owns or, when
/// there is none, the second half of the largest remainder (work stealing): the tail never
/// crawls on one connection. Splits happen only past `reserved`, so no byte is ever written by
/// two workers.
///
/// Why pieces in file order: the hash can only advance over the written run from byte 0. With
/// one large segment per connection that run stays short until the first segment is done, and
/// most of the file is hashed after the last byte arrives (0.7 s of 3.4 s for 1 GiB over 16
/// connections). With pieces the written front moves through the file together and the run
/// from byte 0 trails it by about one piece per connection.
struct SegmentSchedule: Sendable {
    struct Assignment: Equatable, Sendable {
        var start: Int64
        var cursor: Int64
        var reserved: Int64
        var end: Int64
    }

    let size: Int64
    /// A remainder smaller than twice this is not split.
    let minimumSplit: Int64
    /// The most a worker is handed from a gap at once.
    let piece: Int64
    /// Written bytes outside the current assignments.
    private(set) var finished: ByteRanges
    private(set) var assignments: [Int: Assignment] = [:]

    init(size: Int64, written: ByteRanges, minimumSplit: Int64, piece: Int64 = .max) {
        self.size = size
        self.minimumSplit = max(1, minimumSplit)
        self.piece = max(1, piece)
        finished = written.clipped(to: size)
    }

    /// Every byte written so far.
    var written: ByteRanges {
        var all = finished
        for a in assignments.values { all.insert(a.start..<a.cursor) }
        return all
    }

    var writtenBytes: Int64 { finished.total + assignments.values.reduce(0) { $0 + ($1.cursor - $1.start) } }
    var isComplete: Bool { writtenBytes == size }

    /// The end of the written run from byte 0: what may be hashed.
    var prefix: Int64 { written.prefix }

    /// Whether a worker asking now would get something.
    var hasWorkToHandOut: Bool {
        var copy = self
        return copy.next(for: Int.min) != nil
    }

    /// Retires `worker`'s assignment (its written part stays written) and hands it the next one.
    mutating func next(for worker: Int) -> Assignment? {
        release(worker)
        var owned = finished
        for a in assignments.values { owned.insert(a.start..<a.end) }
        if let gap = owned.gaps(in: size).first {
            let end = gap.upperBound - gap.lowerBound > piece ? gap.lowerBound + piece : gap.upperBound
            let a = Assignment(start: gap.lowerBound, cursor: gap.lowerBound, reserved: gap.lowerBound, end: end)
            assignments[worker] = a
            return a
        }
        // The largest remainder; ties go to the lowest offset, so the order is deterministic.
        let victim = assignments.max { x, y in
            let rx = x.value.end - x.value.reserved, ry = y.value.end - y.value.reserved
            return rx != ry ? rx < ry : x.value.start > y.value.start
        }
        guard let (victimID, v) = victim, v.end - v.reserved >= 2 * minimumSplit else { return nil }
        let middle = v.reserved + (v.end - v.reserved) / 2
        assignments[victimID]!.end = middle
        let a = Assignment(start: middle, cursor: middle, reserved: middle, end: v.end)
        assignments[worker] = a
        return a
    }

    /// Gives up `worker`'s assignment: the written part stays, the rest becomes a gap.
    mutating func release(_ worker: Int) {
        if let a = assignments.removeValue(forKey: worker) { finished.insert(a.start..<a.cursor) }
    }

    func assignment(of worker: Int) -> Assignment? { assignments[worker] }

    /// Reserves up to `count` bytes at `worker`'s cursor; returns where they go and how many fit.
    mutating func reserve(_ worker: Int, _ count: Int64) -> (offset: Int64, count: Int64) {
        guard var a = assignments[worker] else { return (0, 0) }
        let take = max(0, min(count, a.end - a.cursor))
        a.reserved = a.cursor + take
        assignments[worker] = a
        return (a.cursor, take)
    }

    /// Marks the reserved bytes of `worker` as written (`count` of them; a failed write
    /// commits fewer).
    mutating func commit(_ worker: Int, _ count: Int64) {
        guard var a = assignments[worker] else { return }
        a.cursor = min(a.reserved, a.cursor + count)
        a.reserved = a.cursor
        assignments[worker] = a
    }
}

/// The segment map of a partial file, saved beside it as `<partial>.map`: which byte ranges
/// are written. Saved only after the partial was flushed, so every range it names is on disk;
/// a crash loses at most the bytes written since the last save, never adds a wrong one.
struct SegmentMapFile: Codable, Equatable {
    static let currentVersion = 1
    var format_version: Int
    var size: Int64
    var sha256: String
    var written: [[Int64]]

    init(size: Int64, sha256: String, written: ByteRanges) {
        format_version = Self.currentVersion
        self.size = size
        self.sha256 = sha256
        self.written = written.ranges.map { [$0.lowerBound, $0.upperBound] }
    }

    /// The ranges, when the map is well formed and for this content; nil otherwise.
    func ranges(size expectedSize: Int64, sha256 expected: String) -> ByteRanges? {
        guard format_version == Self.currentVersion, size == expectedSize, sha256 == expected else { return nil }
        var result = ByteRanges()
        for pair in written {
            guard pair.count == 2, pair[0] >= 0, pair[0] < pair[1], pair[1] <= size else { return nil }
            result.insert(pair[0]..<pair[1])
        }
        return result
    }

    static func name(of partialName: String) -> String { partialName + ".map" }
}
