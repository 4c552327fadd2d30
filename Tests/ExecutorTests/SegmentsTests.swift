import Crypto
import Foundation
import Inventory
import Testing
@testable import Executor
#if canImport(Glibc)
import Glibc
#endif

@Test func byteRangesMergeAndFindGaps() {
    var r = ByteRanges([10..<20, 30..<40])
    r.insert(20..<25)
    #expect(r.ranges == [10..<25, 30..<40])
    r.insert(0..<10)
    #expect(r.prefix == 25)
    #expect(r.gaps(in: 50) == [25..<30, 40..<50])
    #expect(r.clipped(to: 35).ranges == [0..<25, 30..<35])
    #expect(r.total == 35)
}

/// Workers write random amounts, steal and give up at random: no byte is ever handed to two
/// workers, the hashable prefix never runs past a byte not written, and everything gets written.
@Test func workStealingHandsOutEveryByteOnce() {
    var rng = SystemRandomNumberGenerator()
    for _ in 0..<200 {
        let size = Int64.random(in: 1...(64 << 20), using: &rng)
        var initial = ByteRanges()
        for _ in 0..<Int.random(in: 0...3, using: &rng) {
            let a = Int64.random(in: 0..<size, using: &rng)
            initial.insert(a..<min(size, a + Int64.random(in: 1...(4 << 20), using: &rng)))
        }
        // Pieces no smaller than size/4096, so the walk below ends within its bound: each
        // piece costs a few steps (hand-out, writes of up to 1 MiB, an occasional give-up).
        let smallest = max(1, size / 4096)
        let piece = Bool.random(using: &rng) ? Int64.max : Int64.random(in: smallest...max(smallest, 8 << 20), using: &rng)
        let bound = 16 * Int(size / min(piece, size) + 1) + 16 * Int(size >> 19) + 10_000
        var s = SegmentSchedule(size: size, written: initial, minimumSplit: 1 << 20, piece: piece)
        var writtenBytes = ByteRanges(initial.ranges)
        for _ in 0..<Int.random(in: 1...16, using: &rng) { _ = s.next(for: Int.random(in: 0..<16, using: &rng)) }
        var steps = 0
        while !s.isComplete && steps < bound {
            steps += 1
            let worker = Int.random(in: 0..<16, using: &rng)
            guard let a = s.assignment(of: worker) else {
                _ = s.next(for: worker)
                continue
            }
            if a.cursor == a.end || Int.random(in: 0..<50, using: &rng) == 0 {
                _ = s.next(for: worker)
                continue
            }
            let (offset, count) = s.reserve(worker, Int64.random(in: 1...(1 << 20), using: &rng))
            #expect(offset == a.cursor)
            // Nobody else's assignment overlaps what this worker is about to write.
            for (other, b) in s.assignments where other != worker {
                #expect(offset + count <= b.start || offset >= b.end, "overlap with another worker")
            }
            #expect(!writtenBytes.ranges.contains { $0.overlaps(offset..<(offset + count)) }, "rewrites written bytes")
            s.commit(worker, count)
            writtenBytes.insert(offset..<(offset + count))
        }
        #expect(s.isComplete, "all \(size) bytes written after \(steps) steps")
        #expect(s.written == ByteRanges([0..<size]))
        #expect(s.prefix == size)
    }
}

@Test func theSegmentMapRejectsMapsForOtherContent() throws {
    let map = SegmentMapFile(size: 100, sha256: "ab", written: ByteRanges([0..<10, 50..<60]))
    let decoded = try JSONDecoder().decode(SegmentMapFile.self, from: JSONEncoder().encode(map))
    #expect(decoded.ranges(size: 100, sha256: "ab") == ByteRanges([0..<10, 50..<60]))
    #expect(decoded.ranges(size: 101, sha256: "ab") == nil)
    #expect(decoded.ranges(size: 100, sha256: "cd") == nil)
    var bad = decoded
    bad.written = [[50, 200]]
    #expect(bad.ranges(size: 100, sha256: "ab") == nil, "a range past the end")
    bad.written = [[5]]
    #expect(bad.ranges(size: 100, sha256: "ab") == nil)
}

/// Segments written in a random order, each in pieces of random size, while the prefix hasher
/// is advanced at random moments: the result is the one-pass sha256 of the bytes.
@Test func thePrefixHashEqualsTheOnePassHashForRandomSplitPoints() throws {
    var rng = SystemRandomNumberGenerator()
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("wgpm-prefix-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: dir) }
    for round in 0..<40 {
        let size = Int.random(in: 1...(4 << 20), using: &rng)
        var words = [UInt64](repeating: 0, count: size / 8 + 1)
        for i in words.indices { words[i] = rng.next() }
        let bytes = words.withUnsafeBytes { Array($0.prefix(size)) }
        let path = dir.appendingPathComponent("f\(round)").path
        let fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0o600)
        #expect(fd >= 0)
        defer { close(fd) }
        var schedule = SegmentSchedule(size: Int64(size), written: ByteRanges(), minimumSplit: Int64.random(in: 1...(1 << 18), using: &rng),
                                       piece: Int64.random(in: 1...(2 << 20), using: &rng))
        let hasher = PrefixHasher(fd: fd, block: Int.random(in: 1...(1 << 20), using: &rng))
        let workers = Int.random(in: 1...16, using: &rng)
        for w in 0..<workers { _ = schedule.next(for: w) }
        while !schedule.isComplete {
            let w = Int.random(in: 0..<workers, using: &rng)
            guard let a = schedule.assignment(of: w), a.cursor < a.end else {
                _ = schedule.next(for: w)
                continue
            }
            let (offset, count) = schedule.reserve(w, Int64.random(in: 1...(256 << 10), using: &rng))
            let n = bytes.withUnsafeBytes { pwrite(fd, $0.baseAddress! + Int(offset), Int(count), off_t(offset)) }
            #expect(n == Int(count))
            schedule.commit(w, count)
            if Bool.random(using: &rng) { _ = try hasher.advance(to: schedule.prefix, maxSteps: Int.random(in: 1...4, using: &rng)) }
        }
        while hasher.hashed < Int64(size) { _ = try hasher.advance(to: schedule.prefix, maxSteps: 16) }
        #expect(hasher.finalize() == hexString(SHA256.hash(data: bytes)), "size \(size), \(workers) workers")
    }
}

/// Gaps are handed out a piece at a time in file order, so the written front moves together
/// and the hashable run from byte 0 trails it; stealing starts only when no gap is left.
@Test func piecesAreHandedOutInFileOrder() {
    var s = SegmentSchedule(size: 100, written: ByteRanges([40..<50]), minimumSplit: 2, piece: 10)
    #expect(s.next(for: 0)?.start == 0 && s.assignment(of: 0)?.end == 10)
    #expect(s.next(for: 1)?.start == 10 && s.assignment(of: 1)?.end == 20)
    #expect(s.next(for: 2)?.start == 20 && s.assignment(of: 2)?.end == 30)
    _ = s.reserve(0, 10)
    s.commit(0, 10)
    #expect(s.prefix == 10)
    #expect(s.next(for: 0).map { [$0.start, $0.end] } == [30, 40], "the next piece, before the written 40..<50")
    #expect(s.next(for: 3).map { [$0.start, $0.end] } == [50, 60], "past what is written")
    for w in 4..<8 { _ = s.next(for: w) }  // 60..<100 in pieces
    #expect(s.assignment(of: 7).map { [$0.start, $0.end] } == [90, 100])
    // No gap left: the next worker takes the second half of the largest remainder.
    let stolen = s.next(for: 8)
    #expect(stolen.map { [$0.start, $0.end] } == [15, 20], "half of worker 1's 10..<20, the first of the largest")
    #expect(s.assignment(of: 1)?.end == 15)
}
