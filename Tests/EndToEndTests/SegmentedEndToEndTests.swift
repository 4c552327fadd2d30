import Foundation
import Planner
import Testing
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

/// Bytes that never repeat: a segment written at the wrong offset changes the file's hash.
func randomPayload(_ count: Int) -> Data {
    var generator = SystemRandomNumberGenerator()
    var bytes = [UInt8](repeating: 0, count: count)
    for i in stride(from: 0, to: count, by: 8) {
        let word = generator.next() as UInt64
        for j in 0..<min(8, count - i) { bytes[i + j] = UInt8(truncatingIfNeeded: word >> (8 * UInt64(j))) }
    }
    return withSafetensorsStart(Data(bytes))
}

/// The fake file host's cap on each connection, as the Hub's CDN caps them (bytes/s): below
/// `single_stream_above_mbs`, so a download opens more connections.
let cdnRate = 20_000_000

/// A machine wanting one file above the segment threshold, fetched over `connections` from a
/// file host that caps each connection at `cdnRate`.
func segmentedMachine(size: Int = 72 << 20, connections: Int = 4, limitKB: Int = 0, extraConfig: String = "") throws -> (Machine, Data) {
    let m = try Machine(manifest: """
        version: 1
        files:
          - url: \(bigURL)
            path: ckpts/big.safetensors
        """)
    let data = randomPayload(size)
    try m.hub.addFile(repo: "extra/big", path: "weights/big.safetensors", data)
    try m.writeConfig("""
        parallel_downloads: 1
        connections_per_file: \(connections)
        bandwidth_limit_kb: \(limitKB)
        min_free_gb: 0

        """ + extraConfig)
    try m.hub.setConfig(["cdn_rate_per_connection": cdnRate])
    return (m, data)
}

func rangeStart(_ header: String?) -> Int? {
    guard let header, header.hasPrefix("bytes=") else { return nil }
    return Int(header.dropFirst(6).split(separator: "-").first ?? "")
}

@Test func aLargeFileComesOverSeveralConnectionsAndVerifies() throws {
    let (m, data) = try segmentedMachine(limitKB: 30000)
    let result = try m.wgpmRun(["apply", "--yes"])
    #expect(result.status == 0, "\(result.stderr)")
    let placed = try Data(contentsOf: URL(fileURLWithPath: m.dir.file("ckpts/big.safetensors")))
    #expect(sha256Hex(placed) == sha256Hex(data))
    let gets = m.hub.requests(atLeast: 2).filter { $0.listener == "cdn" && $0.method == "GET" }
    let starts = Set(gets.compactMap { rangeStart($0.range) })
    #expect(gets.allSatisfy { $0.status == 206 }, "every request was a range: \(gets.map(\.status))")
    #expect(starts.count >= 4, "several ranges, each from its own offset: \(starts.sorted())")
    let partials = (try? FileManager.default.contentsOfDirectory(atPath: m.dir.file("ckpts/.wgpm-partial"))) ?? []
    #expect(partials.filter { $0 != ".lock" }.isEmpty, "no partial or map left behind: \(partials)")
    #expect(try m.wgpmRun(["plan", "--detailed-exitcode"]).status == 0)
}

@Test func killNineKeepsEveryWrittenRangeAndTheRerunFetchesOnlyTheHoles() throws {
    let size = 72 << 20
    let (m, data) = try segmentedMachine(size: size, connections: 4, limitKB: 6000)
    let (p, _) = try startWGPM(m, ["apply", "--yes"])
    let map = { () -> String? in
        let dir = m.dir.file("ckpts/.wgpm-partial")
        return ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).first { $0.hasSuffix(".part.map") }.map { dir + "/" + $0 }
    }
    #expect(waitFor(60) {
        guard let path = map(), let text = try? String(contentsOfFile: path, encoding: .utf8) else { return false }
        return text.components(separatedBy: "],[").count >= 3  // several ranges written apart
    }, "the segment map names several ranges")
    Thread.sleep(forTimeInterval: 1.5)
    kill(p.processIdentifier, SIGKILL)
    p.waitUntilExit()
    let mapText = try String(contentsOfFile: try #require(map()), encoding: .utf8)
    struct Map: Decodable { var format_version: Int; var written: [[Int]] }
    let saved = try JSONDecoder().decode(Map.self, from: Data(mapText.utf8))
    #expect(saved.format_version == 1)
    let kept = saved.written.reduce(0) { $0 + $1[1] - $1[0] }
    #expect(kept > 4 << 20 && kept < size, "kill -9 kept \(kept) bytes in \(saved.written.count) ranges")
    #expect(!FileManager.default.fileExists(atPath: m.dir.file("ckpts/big.safetensors")), "no partial file at the final path")
    // The plan says how much of the download is there already.
    let plan = try m.wgpmRun(["plan"], env: ["NO_COLOR": "1"]).stdout.split(whereSeparator: { $0 == " " || $0 == "\n" }).joined(separator: " ")
    #expect(plan.contains("(\(formatBytes(Int64(kept))) already in a partial file)") && plan.contains("\(formatBytes(Int64(kept))) of it already fetched"),
            "\(plan)")
    m.hub.clearLog()
    try m.dir.write("config.yaml", (try String(contentsOfFile: m.dir.file("config.yaml"), encoding: .utf8))
        .replacingOccurrences(of: "bandwidth_limit_kb: 6000", with: "bandwidth_limit_kb: 0"))
    let resumed = try m.wgpmRun(["apply", "--yes"])
    #expect(resumed.status == 0, "\(resumed.stderr)")
    #expect(resumed.stdout.contains("\(formatBytes(Int64(size - kept))) downloaded."), "only what this run fetched: \(resumed.stdout)")
    #expect(sha256Hex(try Data(contentsOf: URL(fileURLWithPath: m.dir.file("ckpts/big.safetensors")))) == sha256Hex(data))
    let gets = m.hub.requests(atLeast: 1).filter { $0.listener == "cdn" && $0.method == "GET" }
    for get in gets {
        let start = try #require(rangeStart(get.range), "a range request: \(get.range ?? "none")")
        #expect(!saved.written.contains { start >= $0[0] && start < $0[1] }, "no request starts inside a kept range: \(start)")
    }
    #expect(gets.filter { rangeStart($0.range) != nil }.count >= saved.written.count - 1, "each hole has its own Range")
}

/// Killed within the first second, before any periodic save of the map: the partial is
/// sparse (pieces far into the file have bytes, the ones between do not), and the rerun must
/// not take it for a file written from byte 0 to its length.
@Test func aKillBeforeTheFirstPeriodicSaveLeavesNoHoleCountedAsWritten() throws {
    let size = 72 << 20
    let (m, data) = try segmentedMachine(size: size, connections: 8, limitKB: 20000)
    let dir = m.dir.file("ckpts/.wgpm-partial")
    let part = { ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).first { $0.hasSuffix(".part") }.map { dir + "/" + $0 } }
    let (p, _) = try startWGPM(m, ["apply", "--yes"])
    // A length far past what one connection has sent: pieces further in were written.
    #expect(waitFor(30) { part().flatMap { try? FileManager.default.attributesOfItem(atPath: $0)[.size] as? Int }.map { $0 > 24 << 20 } ?? false },
            "a sparse partial appeared")
    kill(p.processIdentifier, SIGKILL)
    p.waitUntilExit()
    #expect(FileManager.default.fileExists(atPath: (part() ?? "") + ".map"), "the map existed from the start")
    let resumed = try m.wgpmRun(["apply", "--yes"])
    #expect(resumed.status == 0, "\(resumed.stderr)")
    #expect(sha256Hex(try Data(contentsOf: URL(fileURLWithPath: m.dir.file("ckpts/big.safetensors")))) == sha256Hex(data))
}

@Test func aHostThatIgnoresRangesGetsOneStream() throws {
    let (m, data) = try segmentedMachine()
    try m.hub.setConfig(["cdn_rate_per_connection": cdnRate, "faults": [["listener": "cdn", "method": "GET", "type": "ignore_range", "count": 100]]])
    let result = try m.wgpmRun(["apply", "--yes"])
    #expect(result.status == 0, "\(result.stderr)")
    #expect(result.stderr.contains("does not serve byte ranges"), "\(result.stderr)")
    #expect(sha256Hex(try Data(contentsOf: URL(fileURLWithPath: m.dir.file("ckpts/big.safetensors")))) == sha256Hex(data))
}

@Test func anExpiredLinkMidFileIsResolvedAgainAndTheFileCompletes() throws {
    let (m, data) = try segmentedMachine(limitKB: 60000)
    try m.hub.setConfig(["cdn_rate_per_connection": cdnRate, "faults": [["listener": "cdn", "method": "GET", "type": "status", "status": 403, "count": 3]]])
    let result = try m.wgpmRun(["apply", "--yes"])
    #expect(result.status == 0, "\(result.stderr)")
    #expect(result.stderr.contains("expired link"), "\(result.stderr)")
    #expect(sha256Hex(try Data(contentsOf: URL(fileURLWithPath: m.dir.file("ckpts/big.safetensors")))) == sha256Hex(data))
}

@Test func wrongBytesInOneSegmentFailTheHashAndNothingIsPlaced() throws {
    let (m, _) = try segmentedMachine(limitKB: 60000)
    try m.hub.setConfig(["cdn_rate_per_connection": cdnRate, "faults": [["listener": "cdn", "method": "GET", "type": "wrong_bytes", "count": 999]]])
    let result = try m.wgpmRun(["apply", "--yes"])
    #expect(result.status != 0)
    #expect(result.stderr.contains("past any cache"), "one retry with no-cache: \(result.stderr)")
    #expect(result.stderr.contains("downloaded bytes do not match"), "\(result.stderr)")
    #expect(!FileManager.default.fileExists(atPath: m.dir.file("ckpts/big.safetensors")), "nothing placed")
}

@Test func aSegmentWithAnotherRangeThanAskedForIsRefusedAndFetchedAgain() throws {
    let (m, data) = try segmentedMachine(limitKB: 40000)
    // One reply for a range past the first starts 4 KiB later than asked: written at the
    // asked offset, its bytes would all be wrong.
    try m.hub.setConfig(["cdn_rate_per_connection": cdnRate, "faults": [["listener": "cdn", "method": "GET", "type": "shift_range", "shift": 4096,
                                     "range_from": 1, "count": 1]]])
    let result = try m.wgpmRun(["apply", "--yes"])
    #expect(result.status == 0, "\(result.stderr)")
    #expect(sha256Hex(try Data(contentsOf: URL(fileURLWithPath: m.dir.file("ckpts/big.safetensors")))) == sha256Hex(data))
    let gets = m.hub.requests(atLeast: 2).filter { $0.listener == "cdn" && $0.method == "GET" }
    let shifted = try #require(gets.first { $0.fault == "shift_range" }, "the fault was served: \(gets.map(\.range))")
    let start = try #require(rangeStart(shifted.range))
    #expect(gets.contains { $0.fault == nil && rangeStart($0.range) == start }, "the range from \(start) was asked again")
}

@Test func a429OnOneConnectionBacksOffThatConnectionAlone() throws {
    let (m, data) = try segmentedMachine(size: 96 << 20, connections: 4, limitKB: 20000)
    try m.hub.setConfig(["cdn_rate_per_connection": cdnRate, "faults": [["listener": "cdn", "method": "GET", "type": "status", "status": 429,
                                     "headers": ["Retry-After": "2"], "range_from": 1, "count": 1]]])
    let result = try m.wgpmRun(["apply", "--yes"])
    #expect(result.status == 0, "\(result.stderr)")
    #expect(sha256Hex(try Data(contentsOf: URL(fileURLWithPath: m.dir.file("ckpts/big.safetensors")))) == sha256Hex(data))
    let gets = m.hub.requests(atLeast: 2).filter { $0.listener == "cdn" && $0.method == "GET" }
    let limited = try #require(gets.first { $0.status == 429 }, "the 429 was served")
    let at = try #require(limited.time)
    // While that connection waits out its Retry-After (3 s with wgpm's margin), the others
    // go on: replies of theirs end inside the wait, and bytes keep arriving.
    let during = gets.filter { $0.status == 206 && ($0.time ?? 0) > at + 0.2 && ($0.time ?? 0) < at + 2.8 }
    #expect(!during.isEmpty, "other connections delivered during the back-off: \(gets.map { ($0.status, ($0.time ?? 0) - at) })")
}

/// Runs wgpm and returns its exit status and peak resident memory (KiB), from `wait4`'s
/// accounting of exactly that process. Started by a forking Python, not by posix_spawn: a
/// vfork-style child shares this test process's memory until its exec, and Linux carries that
/// high-water mark (hundreds of MiB here) into the child's count.
func runMeasuringPeakRSS(_ m: Machine, _ args: [String]) throws -> (status: Int32, peakKiB: Int, stderr: String) {
    let launcher = """
        import os, sys
        pid = os.fork()
        if pid == 0:
            os.chdir(sys.argv[1])
            err = os.open(sys.argv[2], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            os.dup2(err, 2)
            null = os.open("/dev/null", os.O_WRONLY)
            os.dup2(null, 1)
            os.execv(sys.argv[3], sys.argv[3:])
        _, status, usage = os.wait4(pid, 0)
        print(os.waitstatus_to_exitcode(status), usage.ru_maxrss)
        """
    let err = m.dir.file("peak-rss.stderr")
    let r = try run("/usr/bin/env", ["python3", "-c", launcher, m.dir.path, err, wgpm] + args,
                    environment: ["HF_ENDPOINT": m.hub.hubURL, "HOME": m.dir.path], cwd: m.dir.path)
    let fields = r.stdout.split(separator: " ").map { String($0).trimmingCharacters(in: .whitespacesAndNewlines) }
    guard r.status == 0, fields.count == 2, let status = Int32(fields[0]), let peak = Int(fields[1]) else {
        throw POSIXError(.EIO)
    }
    return (status, peak, (try? String(contentsOfFile: err, encoding: .utf8)) ?? "")
}

@Test func sixteenConnectionsStayWithin64MiB() throws {
    let size = 192 << 20
    let (m, data) = try segmentedMachine(size: size, connections: 16, limitKB: 60000)
    let (status, peak, stderr) = try runMeasuringPeakRSS(m, ["apply", "--yes"])
    #expect(status == 0, "\(stderr)")
    #expect(sha256Hex(try Data(contentsOf: URL(fileURLWithPath: m.dir.file("ckpts/big.safetensors")))) == sha256Hex(data))
    let gets = m.hub.requests(atLeast: 2).filter { $0.listener == "cdn" && $0.method == "GET" }
    #expect(Set(gets.compactMap { rangeStart($0.range) }).count >= 16, "16 connections, and steals among them: \(gets.count) requests")
    #expect(peak <= 64 << 10, "peak RSS \(peak / 1024) MiB with 16 connections over a \(size >> 20) MiB file")
}

@Test func aHostWhoseOneConnectionIsFastGetsOneStream() throws {
    // The first connection brings 20 MB/s, above the 5 MB/s set here: wgpm goes on with it
    // instead of starting more (which only cost CPU where connections are not capped).
    let (m, data) = try segmentedMachine(connections: 8, extraConfig: "single_stream_above_mbs: 5\n")
    let result = try m.wgpmRun(["apply", "--yes"])
    #expect(result.status == 0, "\(result.stderr)")
    #expect(result.stderr.contains("ckpts/big.safetensors: one connection brings") && result.stderr.contains("no more are opened"),
            "\(result.stderr)")
    #expect(!result.stderr.contains("does not serve byte ranges"), "the host was not at fault: \(result.stderr)")
    #expect(sha256Hex(try Data(contentsOf: URL(fileURLWithPath: m.dir.file("ckpts/big.safetensors")))) == sha256Hex(data))
    let gets = m.hub.requests(atLeast: 1).filter { $0.listener == "cdn" && $0.method == "GET" }
    // The measured first request, then one stream from where it stopped.
    #expect(gets.count <= 2, "one connection at a time: \(gets.map { $0.range ?? "whole file" })")
    #expect(gets.last.flatMap { rangeStart($0.range) } ?? 0 < 72 << 20)
}
