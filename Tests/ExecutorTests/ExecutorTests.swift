import Crypto
import Foundation
import HubClient
import Inventory
import Planner
import State
import Synchronization
import Testing
import TestSupport
@testable import Executor

func sha256Hex(_ data: Data) -> String { SHA256.hash(data: data).map { String(format: "%02x", $0) }.joined() }

/// Deterministic bytes that are not all alike, so a flipped or shifted byte changes the hash.
func payload(_ count: Int, seed: UInt8 = 1) -> Data {
    var bytes = [UInt8](repeating: 0, count: count)
    for i in 0..<count { bytes[i] = UInt8(truncatingIfNeeded: i &* 131 &+ Int(seed) &* 7 &+ i >> 9) }
    return withSafetensorsStart(Data(bytes))
}

/// A fake Hub with one LFS file and one small file, and a downloader pointed at it.
final class Rig: @unchecked Sendable {
    let dir: TempDir
    let hub: FakeHub
    let client: HubClient
    let sleeper = RecordingSleeper()
    let big = payload(3 << 20)
    let small = Data("{\"tokenizer\": true}\n".utf8)
    let commit: String

    init(config: [String: Any] = ["tokens": ["hf_tok"]], token: String? = "hf_tok") throws {
        dir = try TempDir("exec")
        hub = try FakeHub(root: dir.file("hub"), config: config)
        try hub.addFile(repo: "org/repo", path: "sub/big.safetensors", big)
        try hub.addFile(repo: "org/repo", path: "tok/tokenizer.json", small)
        client = HubClient(endpoint: hub.hubURL, token: token, sleeper: sleeper)
        commit = try client.resolveCommit(HubReference(repo: "org/repo", revision: "main", path: ""))
    }

    deinit { hub.stop(); dir.remove() }

    func bigSpec() -> JobSpec {
        JobSpec(kind: .download, path: "ckpts/big.safetensors", target: dir.file("ckpts/big.safetensors"),
                partialDirectory: dir.file("ckpts/.wgpm-partial"),
                url: "https://huggingface.co/org/repo/resolve/main/sub/big.safetensors", repo: "org/repo", commit: commit,
                size: Int64(big.count), sha256: sha256Hex(big), replaces: false)
    }

    func smallSpec() -> JobSpec {
        var sha1 = Insecure.SHA1()
        sha1.update(data: Data("blob \(small.count)\0".utf8))
        sha1.update(data: small)
        return JobSpec(kind: .download, path: "ckpts/tok/tokenizer.json", target: dir.file("ckpts/tok/tokenizer.json"),
                       partialDirectory: dir.file("ckpts/.wgpm-partial"),
                       url: "https://huggingface.co/org/repo/resolve/main/tok/tokenizer.json", repo: "org/repo", commit: commit,
                       size: Int64(small.count), gitSHA1: sha1.finalize().map { String(format: "%02x", $0) }.joined(), replaces: false)
    }

    func downloader() -> Downloader {
        Downloader(hub: client, transfer: CurlDownload(lowSpeedTime: 5), sleeper: sleeper)
    }

    func download(_ spec: JobSpec) throws {
        try downloader().run(spec, cancel: CancelFlag(), progress: { _ in }, notice: { _ in })
    }

    func fault(_ fault: [String: Any]) throws {
        try hub.setConfig(["tokens": ["hf_tok"], "faults": [fault]])
    }

    var cdnGets: [LoggedRequest] { hub.requests().filter { $0.listener == "cdn" && $0.method == "GET" } }
}

@Test func downloadsVerifiesAndPlacesAtomically() throws {
    let rig = try Rig()
    try rig.download(rig.bigSpec())
    #expect(FileManager.default.contents(atPath: rig.dir.file("ckpts/big.safetensors")) == rig.big)
    try rig.download(rig.smallSpec())
    #expect(FileManager.default.contents(atPath: rig.dir.file("ckpts/tok/tokenizer.json")) == rig.small)
    let partials = try FileManager.default.contentsOfDirectory(atPath: rig.dir.file("ckpts/.wgpm-partial"))
    #expect(partials.isEmpty, "no partial left behind")
    // The token went to the Hub (resolve and resolve-cache), never to the file host.
    let log = rig.hub.requests(atLeast: 5)
    #expect(log.filter { $0.listener == "cdn" }.allSatisfy { !$0.auth })
    #expect(log.filter { $0.listener == "cdn" }.count == 1)
    #expect(log.filter { $0.listener == "hub" }.allSatisfy { $0.auth })
    #expect(log.contains { $0.path.hasPrefix("/api/resolve-cache/") && $0.method == "GET" && $0.auth })
}

@Test func droppedConnectionResumesWithRange() throws {
    let rig = try Rig()
    try rig.fault(["listener": "cdn", "method": "GET", "type": "drop", "after_bytes": 1_000_000, "count": 1])
    try rig.download(rig.bigSpec())
    #expect(FileManager.default.contents(atPath: rig.dir.file("ckpts/big.safetensors")) == rig.big)
    let gets = rig.cdnGets
    #expect(gets.count == 2)
    #expect(gets.first?.range == nil)
    #expect(gets.last?.range == "bytes=1000000-", "resumed from the bytes on disk")
    #expect(gets.last?.status == 206)
}

/// Files over the threshold come in bounded Range requests, one chunk after another, and a chunk
/// cut short resumes inside its own bounds.
@Test func veryLargeFilesAreFetchedInBoundedChunks() throws {
    let rig = try Rig()
    try rig.fault(["listener": "cdn", "method": "GET", "type": "drop", "after_bytes": 600_000, "count": 1])
    var downloader = rig.downloader()
    downloader.chunkThreshold = 2 << 20  // the 3 MiB file counts as very large here
    downloader.chunkSize = 1 << 20
    try downloader.run(rig.bigSpec(), cancel: CancelFlag(), progress: { _ in }, notice: { _ in })
    #expect(FileManager.default.contents(atPath: rig.dir.file("ckpts/big.safetensors")) == rig.big)
    #expect(rig.cdnGets.map(\.range) == ["bytes=0-1048575", "bytes=600000-1048575", "bytes=1048576-2097151", "bytes=2097152-3145727"])
    #expect(rig.cdnGets.dropFirst().allSatisfy { $0.status == 206 })
    #expect(rig.sleeper.waits.count == 1, "only the dropped connection waited")
}

/// A file host that stops sending without closing the connection is given up on after the
/// low-speed window (below 1 KB/s; 60 s in use, 1 s here), and the download resumes from the
/// bytes on disk instead of hanging.
@Test func aStalledTransferIsAbandonedAndResumed() throws {
    let rig = try Rig()
    try rig.fault(["listener": "cdn", "method": "GET", "type": "stall", "after_bytes": 700_000, "seconds": 30, "count": 1])
    var downloader = rig.downloader()
    downloader.transfer = CurlDownload(lowSpeedTime: 1)
    let started = Date()
    try downloader.run(rig.bigSpec(), cancel: CancelFlag(), progress: { _ in }, notice: { _ in })
    #expect(Date().timeIntervalSince(started) < 20, "did not wait for the stalled server")
    #expect(FileManager.default.contents(atPath: rig.dir.file("ckpts/big.safetensors")) == rig.big)
    #expect(rig.cdnGets.last?.range == "bytes=700000-")
    #expect(rig.sleeper.waits.count == 1)
}

@Test func aTwoHundredToARangeRequestRestartsFromZero() throws {
    let rig = try Rig()
    try rig.hub.setConfig(["tokens": ["hf_tok"], "faults": [
        ["listener": "cdn", "method": "GET", "type": "drop", "after_bytes": 500_000, "count": 1],
        ["listener": "cdn", "method": "GET", "type": "ignore_range", "count": 1]]])
    try rig.download(rig.bigSpec())
    #expect(FileManager.default.contents(atPath: rig.dir.file("ckpts/big.safetensors")) == rig.big, "never appended")
    #expect(rig.cdnGets.map(\.status) == [200, 200])
    #expect(rig.cdnGets.last?.range == "bytes=500000-")
}

@Test func rateLimitAndServerErrorsAreRetried() throws {
    let rig = try Rig()
    try rig.hub.setConfig(["tokens": ["hf_tok"], "faults": [
        ["listener": "cdn", "method": "GET", "status": 429, "headers": ["Retry-After": "2"], "count": 1],
        ["listener": "cdn", "method": "GET", "status": 500, "count": 1]]])
    try rig.download(rig.bigSpec())
    #expect(FileManager.default.contents(atPath: rig.dir.file("ckpts/big.safetensors")) == rig.big)
    #expect(rig.sleeper.waits.first == 3, "Retry-After 2 waits 2+1 s")
    #expect(rig.sleeper.waits.count == 2)
}

@Test func expiredFileHostLinkIsResolvedAgain() throws {
    let rig = try Rig()
    try rig.hub.setConfig(["tokens": ["hf_tok"], "faults": [
        ["listener": "cdn", "method": "GET", "type": "drop", "after_bytes": 700_000, "count": 1],
        ["listener": "cdn", "method": "GET", "status": 403, "count": 1]]])
    try rig.download(rig.bigSpec())
    #expect(FileManager.default.contents(atPath: rig.dir.file("ckpts/big.safetensors")) == rig.big)
    let resolves = rig.hub.requests().filter { $0.listener == "hub" && $0.path.contains("/resolve/") && $0.method == "HEAD" }
    #expect(resolves.count >= 3, "a fresh signed URL after the 403")
    #expect(rig.cdnGets.last?.range == "bytes=700000-", "the partial was kept across the re-resolve")
}

@Test func wrongBytesNeverReachTheFinalPath() throws {
    let rig = try Rig()
    // Two uses: the first attempt and its one retry past the caches both get wrong bytes.
    try rig.fault(["listener": "cdn", "method": "GET", "type": "wrong_bytes", "count": 2])
    #expect(throws: ExecutorError.self) { try rig.download(rig.bigSpec()) }
    #expect(!FileManager.default.fileExists(atPath: rig.dir.file("ckpts/big.safetensors")))
    let partials = try FileManager.default.contentsOfDirectory(atPath: rig.dir.file("ckpts/.wgpm-partial"))
    #expect(partials.isEmpty, "the bad partial is deleted, not resumed")
    try rig.download(rig.bigSpec())
    #expect(FileManager.default.contents(atPath: rig.dir.file("ckpts/big.safetensors")) == rig.big)
    #expect(rig.cdnGets.last?.range == nil, "started over from byte 0")
}

@Test func aCorruptedCacheEntryIsFetchedAgainWithNoCache() throws {
    // A proxy cache that serves the same wrong bytes until a request says `no-cache`.
    for small in [false, true] {
        let rig = try Rig()
        let job = small ? rig.smallSpec() : rig.bigSpec()
        let listener = small ? "hub" : "cdn"
        try rig.fault(["listener": listener, "method": "GET", "type": "wrong_bytes", "count": 99, "unless_no_cache": true])
        let notices = Mutex<[String]>([])
        try rig.downloader().run(job, cancel: CancelFlag(), progress: { _ in }, notice: { n in notices.withLock { $0.append(n) } })
        let placed = FileManager.default.contents(atPath: job.target)
        #expect(placed == (small ? rig.small : rig.big))
        let gets = rig.hub.requests().filter { $0.listener == listener && $0.method == "GET" && !$0.path.contains("/revision/") }
        #expect(gets.count == 2 && gets.first?.fault == "wrong_bytes" && gets.last?.fault == nil, "\(gets.map(\.fault))")
        // The small JSON file's wrong first byte is refused before the hash (not JSON); the
        // next request goes past the caches all the same.
        #expect(small || notices.withLock { $0 }.contains { $0.contains("past any cache") })
    }
}

@Test func persistentFailureKeepsThePartial() throws {
    let rig = try Rig()
    try rig.hub.setConfig(["tokens": ["hf_tok"], "faults": [
        ["listener": "cdn", "method": "GET", "type": "drop", "after_bytes": 300_000, "count": 1],
        ["listener": "cdn", "method": "GET", "status": 503, "count": 50]]])
    do {
        try rig.download(rig.bigSpec())
        Issue.record("expected a failure")
    } catch let error as ExecutorError {
        guard case .gaveUp = error else { Issue.record("got \(error)"); return }
        #expect("\(error)".contains("6 tries failed") && "\(error)".contains("'wgpm queue retry' tries again, from what a partial file holds"), "\(error)")
    }
    let partial = rig.dir.file("ckpts/.wgpm-partial/" + Downloader.partialName(rig.bigSpec()))
    #expect((try? FileManager.default.attributesOfItem(atPath: partial)[.size] as? Int) == 300_000)
    #expect(!FileManager.default.fileExists(atPath: rig.dir.file("ckpts/big.safetensors")))
}

@Test func upstreamChangeIsNotResumedIntoTheOldFile() throws {
    let rig = try Rig()
    var spec = rig.bigSpec()
    spec.commit = nil  // follow main, which is about to move
    try rig.hub.addFile(repo: "org/repo", path: "sub/big.safetensors", payload(3 << 20, seed: 9))
    #expect(throws: ExecutorError.upstreamChanged(path: spec.path, expected: spec.sha256!,
                                                   served: sha256Hex(payload(3 << 20, seed: 9)))) {
        try rig.download(spec)
    }
}

@Test func unwritableTargetIsAClearError() throws {
    let rig = try Rig()
    try rig.dir.write("ckpts", "a file where the folder belongs")
    do {
        try rig.download(rig.bigSpec())
        Issue.record("expected an error")
    } catch let error as ExecutorError {
        #expect("\(error)".contains("cannot write ckpts/big.safetensors"))
    }
}

@Test func linksAreMadeAtomicallyAndChecked() throws {
    let dir = try TempDir("link")
    defer { dir.remove() }
    let content = payload(10_000)
    let source = try dir.write("store/model.bin", content)
    try dir.write("ckpts/old.bin", "old")
    func spec(_ name: String, _ mode: LinkMode, basis: String = "sha256", sha: String? = nil, from: String? = nil) -> JobSpec {
        JobSpec(kind: .link, path: "ckpts/\(name)", target: dir.file("ckpts/\(name)"), size: Int64(content.count),
                sha256: sha ?? sha256Hex(content), linkFrom: from ?? source, linkMode: mode, basis: basis, replaces: false)
    }
    let linker = Linker()
    try linker.run(spec("a.bin", .symlink))
    #expect(try FileManager.default.destinationOfSymbolicLink(atPath: dir.file("ckpts/a.bin")) == source)
    try linker.run(spec("b.bin", .hardlink))
    #expect(LocalFileSystem().stat(dir.file("ckpts/b.bin"))?.inode == LocalFileSystem().stat(source)?.inode)
    try linker.run(spec("old.bin", .copy))
    #expect(FileManager.default.contents(atPath: dir.file("ckpts/old.bin")) == content, "replaced by rename")
    #expect(throws: ExecutorError.badContent(path: "ckpts/c.bin", source: source,
                                             reason: "sha256 \(sha256Hex(content).prefix(12))… instead of 000000000000…")) {
        try linker.run(spec("c.bin", .symlink, basis: "url", sha: String(repeating: "0", count: 64)))
    }
    #expect(!FileManager.default.fileExists(atPath: dir.file("ckpts/c.bin")))
    #expect(throws: ExecutorError.sourceVanished(path: "ckpts/d.bin", source: dir.file("store/gone.bin"))) {
        try linker.run(spec("d.bin", .symlink, from: dir.file("store/gone.bin")))
    }
    let leftovers = try FileManager.default.contentsOfDirectory(atPath: dir.file("ckpts")).filter { $0.hasPrefix(".wgpm-tmp") }
    #expect(leftovers.isEmpty)
}

@Test func queueIsIdempotentAndRecoversAbandonedJobs() throws {
    let rig = try Rig()
    let state = try StateDatabase(directory: rig.dir.file("state"))
    let specs = [rig.bigSpec(), rig.smallSpec()]
    let rows = specs.map { ($0.id, $0.kind.rawValue, $0.path, $0.encoded(), $0.size) }
    #expect(try state.enqueue(rows, at: 1) == 2)
    #expect(try state.enqueue(rows, at: 2) == 0, "the same plan twice adds nothing")
    #expect(try state.jobs().count == 2)
    // A process claims a job and dies: the next runner takes it back.
    let claimed = try #require(try state.claimNextJob(pid: 999_999, at: 3))
    #expect(claimed.state == .running)
    #expect(try state.recoverAbandonedJobs(at: 4) == 1)
    let runner = QueueRunner(state: state, downloader: rig.downloader(), workers: 2, minFreeBytes: 0,
                             notice: { _ in }, onJobEnd: { _, _ in })
    let summary = try runner.run(cancel: CancelFlag(), board: ProgressBoard(jobs: specs.map { ($0.id, $0.size) }))
    #expect(summary.failed.isEmpty)
    #expect(Set(summary.completed) == ["ckpts/big.safetensors", "ckpts/tok/tokenizer.json"])
    #expect(try state.jobs().allSatisfy { $0.state == .done })
    #expect(try state.managedPaths() == ["ckpts/big.safetensors", "ckpts/tok/tokenizer.json"])
    #expect(try state.clearJobs(includeFailed: false) == 2)
}

@Test func freeSpaceIsCheckedBeforeAnyDownload() throws {
    let rig = try Rig()
    let state = try StateDatabase(directory: rig.dir.file("state"))
    let spec = rig.bigSpec()
    try state.enqueue([(spec.id, spec.kind.rawValue, spec.path, spec.encoded(), spec.size)], at: 1)
    let runner = QueueRunner(state: state, downloader: rig.downloader(), workers: 1, minFreeBytes: Int64.max / 2,
                             notice: { _ in }, onJobEnd: { _, _ in })
    #expect(throws: ExecutorError.self) { _ = try runner.run(cancel: CancelFlag(), board: nil) }
    #expect(rig.cdnGets.isEmpty, "nothing was downloaded")
}

@Test func failedJobsCanBeRetried() throws {
    let rig = try Rig()
    let state = try StateDatabase(directory: rig.dir.file("state"))
    let spec = rig.bigSpec()
    try state.enqueue([(spec.id, spec.kind.rawValue, spec.path, spec.encoded(), spec.size)], at: 1)
    try rig.fault(["listener": "cdn", "method": "GET", "type": "wrong_bytes", "count": 2])
    let runner = QueueRunner(state: state, downloader: rig.downloader(), workers: 1, minFreeBytes: 0,
                             notice: { _ in }, onJobEnd: { _, _ in })
    let first = try runner.run(cancel: CancelFlag(), board: nil)
    #expect(first.failed.count == 1)
    let failed = try #require(try state.jobs().first)
    #expect(failed.state == .failed && failed.lastError?.contains("do not match") == true)
    #expect(try state.retryFailedJobs(at: 2) == 1)
    let second = try runner.run(cancel: CancelFlag(), board: nil)
    #expect(second.failed.isEmpty && second.completed == ["ckpts/big.safetensors"])
}

/// Bytes with no period, so a slot overwritten by a later MiB cannot go unnoticed (`payload`
/// repeats every 128 KiB).
func noise(_ count: Int, seed: UInt64) -> Data {
    var state = seed | 1
    var bytes = [UInt8](repeating: 0, count: count)
    for i in 0..<count {
        state ^= state << 13; state ^= state >> 7; state ^= state << 17  // xorshift64
        bytes[i] = UInt8(truncatingIfNeeded: state)
    }
    return Data(bytes)
}

/// Chunks of every size, crossing the pipeline's 1 MiB slots at odd offsets, land in order in
/// the file, and both digests equal a one-shot hash of the whole: writing and hashing run on
/// separate threads over the same slots, so an early-freed slot would show up here.
@Test func partialFileWritesAndHashesInOrderAcrossSlots() throws {
    let dir = try TempDir("partial")
    defer { dir.remove() }
    let data = noise((9 << 20) + 12_345, seed: 9)
    var sha1 = Insecure.SHA1()
    sha1.update(data: Data("blob \(data.count)\0".utf8))
    sha1.update(data: data)
    let wantSHA1 = sha1.finalize().map { String(format: "%02x", $0) }.joined()

    let path = dir.file("a.part")
    let file = try PartialFile(path: path, expectedSize: Int64(data.count), wantGitSHA1: true)
    var offset = 0
    var size = 1
    try data.withUnsafeBytes { raw in
        while offset < data.count {
            let n = min(size, data.count - offset)
            try file.write(UnsafeRawBufferPointer(rebasing: raw[offset..<offset + n]))
            offset += n
            size = size * 3 + 7  // 1, 10, 37, … up to several MiB, then again
            if size > 3 << 20 { size = 1 }
        }
    }
    try file.sync()
    let digests = file.digests()
    #expect(digests.sha256 == sha256Hex(data))
    #expect(digests.gitSHA1 == wantSHA1)
    #expect(file.length == Int64(data.count))
    #expect(try Data(contentsOf: URL(fileURLWithPath: path)) == data)

    // Reopened, the bytes already there are hashed first and the stream continues from them.
    let half = data.count / 2
    let cut = dir.file("b.part")
    try data.prefix(half).write(to: URL(fileURLWithPath: cut))
    let resumed = try PartialFile(path: cut, expectedSize: Int64(data.count), wantGitSHA1: false)
    #expect(resumed.length == Int64(half))
    try data.withUnsafeBytes { try resumed.write(UnsafeRawBufferPointer(rebasing: $0[half...])) }
    try resumed.sync()
    #expect(resumed.digests().sha256 == sha256Hex(data))
    #expect(try Data(contentsOf: URL(fileURLWithPath: cut)) == data)
}

/// A write that fails on the writer thread (here ENOSPC, from /dev/full) surfaces as an error
/// on the transfer side instead of a file that silently misses bytes, and reads as a full disk.
/// (The descriptor is opened here: a PartialFile would refuse /dev/full as not a regular file.)
@Test func fullDiskIsReportedByThePipeline() throws {
    let fd = open("/dev/full", O_WRONLY | O_CLOEXEC)
    try #require(fd >= 0)
    defer { close(fd) }
    let pipeline = try HashPipeline(gitSHA1Size: nil)
    var failure: Error?
    do {
        try payload(4 << 20).withUnsafeBytes { raw in
            for start in stride(from: 0, to: raw.count, by: 256 << 10) {
                try pipeline.feed(UnsafeRawBufferPointer(rebasing: raw[start..<min(start + (256 << 10), raw.count)]), writeTo: fd)
            }
        }
        try pipeline.drain()
    } catch {
        failure = error
    }
    let code = try #require(failure as? WriteFailure).code
    #expect(code == ENOSPC)
    #expect(ExecutorError.posix(path: "ckpts/x", code: code, doing: "write") == .diskFull(path: "ckpts/x"))
    #expect("\(ExecutorError.diskFull(path: "ckpts/x"))".contains("no space left"))
}

/// With only two slots the transfer side waits for a slot on almost every MiB, so a slot handed
/// back before both the writer and the hasher are done with it would be overwritten under one
/// of them: the file or the digest would differ.
@Test func pipelineSlotsAreReusedOnlyWhenBothStagesAreDone() throws {
    let dir = try TempDir("pipeline")
    defer { dir.remove() }
    let data = noise(32 << 20, seed: 5)
    let path = dir.file("out")
    let fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0o644)
    #expect(fd >= 0)
    defer { close(fd) }
    let pipeline = try HashPipeline(slots: 2, gitSHA1Size: nil)
    try data.withUnsafeBytes { raw in
        for start in stride(from: 0, to: raw.count, by: 300_000) {
            try pipeline.feed(UnsafeRawBufferPointer(rebasing: raw[start..<min(start + 300_000, raw.count)]), writeTo: fd)
        }
    }
    try pipeline.drain()
    #expect(pipeline.digests().sha256 == sha256Hex(data))
    #expect(try Data(contentsOf: URL(fileURLWithPath: path)) == data)
}

/// A following worker checks the space of jobs enqueued after it started, as `run` does for the
/// ones there at the start (all of a batch or none, as for apply): a download that does not fit
/// fails with the reason and is never fetched; a later one that fits is carried out.
@Test func jobsEnqueuedWhileFollowingAreCheckedForSpace() throws {
    let rig = try Rig()
    let state = try StateDatabase(directory: rig.dir.file("state"))
    // 2 MiB free: the 3 MiB file cannot fit, the small one can.
    let runner = QueueRunner(state: state, downloader: rig.downloader(), workers: 1, minFreeBytes: 0,
                             fileSystem: FixedFreeSpace(freeBytes: 2 << 20), notice: { _ in }, onJobEnd: { _, _ in })
    let cancel = CancelFlag()
    let finished = DispatchSemaphore(value: 0)
    let result = Mutex<RunSummary?>(nil)
    Thread {
        let summary = try? runner.run(cancel: cancel, board: nil, follow: true)
        result.withLock { $0 = summary }
        finished.signal()
    }.start()
    Thread.sleep(forTimeInterval: 0.3)  // the worker is idle and following
    func settle(_ path: String) -> JobRecord.State? {
        for _ in 0..<100 {
            if let job = try? state.jobs().first(where: { $0.path == path }), job.state == .done || job.state == .failed { return job.state }
            Thread.sleep(forTimeInterval: 0.1)
        }
        return nil
    }
    let big = rig.bigSpec(), small = rig.smallSpec()
    try state.enqueue([(big.id, big.kind.rawValue, big.path, big.encoded(), big.size)], at: 2)
    #expect(settle(big.path) == .failed)
    try state.enqueue([(small.id, small.kind.rawValue, small.path, small.encoded(), small.size)], at: 3)
    #expect(settle(small.path) == .done, "a later job that fits runs; the failed one no longer counts")
    cancel.set()
    finished.wait()
    let failed = try #require(try state.jobs().first { $0.path == big.path })
    #expect(failed.lastError?.contains("not enough space") == true, "\(failed)")
    #expect(!rig.cdnGets.contains { $0.path.contains(big.sha256 ?? "-") }, "the big file was never fetched")
    #expect(result.withLock { $0?.failed.map(\.path) } == [big.path])
}

/// The real file system, except that every filesystem reports the same free space.
struct FixedFreeSpace: FileSystem {
    var freeBytes: Int64
    let real = LocalFileSystem()
    func lstat(_ path: String) -> FileStatus? { real.lstat(path) }
    func stat(_ path: String) -> FileStatus? { real.stat(path) }
    func readlink(_ path: String) -> String? { real.readlink(path) }
    func hash(_ path: String, sha256: Bool, gitSHA1: Bool) throws -> (sha256: String?, gitSHA1: String?) {
        try real.hash(path, sha256: sha256, gitSHA1: gitSHA1)
    }
    func filesystem(of path: String) -> (id: String, mountPoint: String, freeBytes: Int64)? {
        real.filesystem(of: path).map { ($0.id, $0.mountPoint, freeBytes) }
    }
}

/// Totals grow with jobs that were not waiting when the run began (a following worker), and a
/// job counted at the start is not counted twice.
@Test func progressTotalsGrowWithJobsEnqueuedLater() {
    let board = ProgressBoard(jobs: [("a", 100), ("b", nil)])
    board.begin("a", path: "ckpts/a", total: 100)
    board.update("a", done: 100)
    board.end("a", bytes: 100)
    var s = board.snapshot()
    #expect(s.totalBytes == 100 && s.totalFiles == 2 && s.doneBytes == 100 && s.doneFiles == 1)
    board.begin("c", path: "ckpts/c", total: 50)
    board.update("c", done: 20)
    s = board.snapshot()
    #expect(s.totalBytes == 150 && s.totalFiles == 3 && s.doneBytes == 120)
    #expect(s.active.map(\.path) == ["ckpts/c"])
    // A failed file is not progress: its bytes leave the done count, the file is not done.
    board.fail("c")
    s = board.snapshot()
    #expect(s.doneBytes == 100 && s.doneFiles == 1 && s.failedFiles == 1 && s.failedBytes == 50)
    #expect(s.active.isEmpty)
    // A resumed file counts whole when placed: 30 bytes were in its partial, 70 fetched now.
    board.begin("d", path: "ckpts/d", total: 100)
    board.update("d", done: 30)
    board.update("d", done: 100)
    board.end("d", bytes: 70)
    s = board.snapshot()
    #expect(s.doneBytes == 200 && s.doneFiles == 2 && s.totalBytes == 250)
}

/// Early write-back depends on finding sync_file_range at run time; if the lookup silently
/// failed, downloads would still work but every fsync would flush the whole file at the end.
@Test func syncFileRangeIsFoundAndAcceptsAFile() throws {
    let dir = try TempDir("writeback")
    defer { dir.remove() }
    let fd = open(dir.file("f"), O_RDWR | O_CREAT, 0o644)
    defer { close(fd) }
    let call = try #require(syncFileRange)
    #expect(write(fd, "x", 1) == 1)
    #expect(call(fd, 0, 0, 1 | 2) == 0)
}

/// A job that had failed before the worker started, retried while it follows, is checked for
/// space like any newcomer: the check at the start did not count it.
@Test func aJobRetriedWhileFollowingIsCheckedForSpace() throws {
    let rig = try Rig()
    let state = try StateDatabase(directory: rig.dir.file("state"))
    let big = rig.bigSpec()
    try state.enqueue([(big.id, big.kind.rawValue, big.path, big.encoded(), big.size)], at: 1)
    let claimed = try #require(try state.claimNextJob(pid: getpid(), at: 2))
    try state.failJob(claimed.id, error: "HTTP 500", at: 3)
    let runner = QueueRunner(state: state, downloader: rig.downloader(), workers: 1, minFreeBytes: 0,
                             fileSystem: FixedFreeSpace(freeBytes: 2 << 20), notice: { _ in }, onJobEnd: { _, _ in })
    let cancel = CancelFlag()
    let finished = DispatchSemaphore(value: 0)
    Thread {
        _ = try? runner.run(cancel: cancel, board: nil, follow: true)
        finished.signal()
    }.start()
    Thread.sleep(forTimeInterval: 0.3)
    #expect(try state.retryFailedJobs(at: 4) == 1)
    let settled = (0..<100).contains { _ in
        Thread.sleep(forTimeInterval: 0.1)
        return (try? state.jobs().first?.state) == .failed
    }
    cancel.set()
    finished.wait()
    #expect(settled)
    #expect(try state.jobs().first?.lastError?.contains("not enough space") == true)
    #expect(rig.cdnGets.isEmpty, "the retried file was not fetched")
}

/// Links need no network: they are claimed before downloads enqueued earlier, so a Hub that is
/// slow or down does not hold back what local sources provide.
@Test func linksAreClaimedBeforeDownloads() throws {
    let dir = try TempDir("claim")
    defer { dir.remove() }
    let state = try StateDatabase(directory: dir.file("state"))
    try state.enqueue([("d1", "download", "ckpts/a", "{}", 10), ("l1", "link", "ckpts/b", "{}", 10),
                       ("d2", "download", "ckpts/c", "{}", 10), ("r1", "remove", "ckpts/d", "{}", nil)], at: 1)
    var order: [String] = []
    while let job = try state.claimNextJob(pid: getpid(), at: 2) { order.append(job.id) }
    #expect(order == ["l1", "r1", "d1", "d2"])
}

/// The breaker opens after `threshold` connection failures in a row to one origin, for every
/// holder of the client (each worker's copy), and an answer in between resets the count.
@Test func theHostBreakerGivesUpOnAHostThatDoesNotConnect() throws {
    let client = HubClient(endpoint: "http://127.0.0.1:9", token: nil, sleeper: RecordingSleeper(), maxAttempts: 10)
    let copy = client
    #expect(throws: HubError.hostDown(origin: "http://127.0.0.1:9", failures: 3)) {
        _ = try client.downloadSource(HubReference(repo: "a/b", revision: "main", path: "x"), revision: "main")
    }
    #expect(copy.breaker.openOrigins == ["http://127.0.0.1:9"])
    #expect(throws: HubError.hostDown(origin: "http://127.0.0.1:9", failures: 3)) {
        _ = try copy.resolveCommit(HubReference(repo: "a/b", revision: "main", path: ""))
    }
    let breaker = HostBreaker(threshold: 2)
    breaker.recordFailure("h")
    breaker.recordAnswer("h")
    #expect(!breaker.recordFailure("h") && !breaker.isOpen("h"))
    #expect(breaker.recordFailure("h") && breaker.isOpen("h"))
}
