import Foundation
import HubClient
import Inventory
import Planner
import State
import Synchronization
import Testing
import TestSupport
@testable import Executor
#if canImport(Glibc)
import Glibc
#endif

// Hostile servers, planted files and a crafted queue: each test here failed before the
// hardening of the executor (see the comment on each for what happened then).

/// A TCP listener on 127.0.0.1 that only counts whether anyone connected: the target a
/// redirect to gopher:// or dict:// would reach.
final class Listener: @unchecked Sendable {
    let fd: Int32
    let port: UInt16

    init() throws {
        let s = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = 0
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { p -> Int32 in
                guard bind(s, p, len) == 0, listen(s, 16) == 0 else { return -1 }
                return getsockname(s, p, &len)
            }
        }
        fd = s
        port = UInt16(bigEndian: addr.sin_port)
        try #require(bound == 0)
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
    }

    /// True when a connection is waiting to be accepted.
    var wasReached: Bool {
        let c = accept(fd, nil, nil)
        if c >= 0 { close(c); return true }
        return false
    }

    deinit { close(fd) }
}

/// A Hub whose resolve redirects to another scheme is refused at once; nothing reaches the
/// port it names and `file:///dev/zero` is not read. Before: libcurl followed the redirect
/// (a token-free request followed redirects of any scheme): bytes went to the local port, and
/// file:///dev/zero spun forever.
@Test(arguments: ["gopher", "dict", "file", "ftp"])
func aHubRedirectToAnotherSchemeIsRefused(_ scheme: String) throws {
    let rig = try Rig()
    let listener = try Listener()
    let location = scheme == "file" ? "file:///dev/zero" : "\(scheme)://127.0.0.1:\(listener.port)/_attacker"
    try rig.fault(["listener": "hub", "path_contains": "/resolve/", "type": "redirect", "location": location, "count": 100])
    #expect(throws: HubError.self) { try rig.download(rig.bigSpec()) }
    #expect(!listener.wasReached)
    #expect(!FileManager.default.fileExists(atPath: rig.dir.file("ckpts/big.safetensors")))
    #expect(rig.cdnGets.isEmpty)
}

/// The file host redirecting elsewhere: libcurl may follow http(s) hops only, and few of them.
/// Before: a redirect to gopher:// was followed; a redirect loop ran ~2,000 hops per attempt.
/// (libcurl 7.88 itself follows ftp:// but not gopher:// by default; both are refused here.)
@Test(arguments: ["gopher", "ftp"])
func theFileHostMayRedirectOnlyToHTTPAndOnlyAFewTimes(_ scheme: String) throws {
    let rig = try Rig()
    let listener = try Listener()
    try rig.fault(["listener": "cdn", "type": "redirect", "location": "\(scheme)://127.0.0.1:\(listener.port)/_x", "count": 100])
    do {
        try rig.download(rig.bigSpec())
        Issue.record("expected a failure")
    } catch let error as ExecutorError {
        #expect("\(error)".contains("scheme other than http or https"), "\(error)")
    }
    #expect(!listener.wasReached)

    let loop = try Rig()
    try loop.fault(["listener": "cdn", "type": "redirect_loop", "count": 1])
    try loop.download(loop.bigSpec())
    #expect(FileManager.default.contents(atPath: loop.dir.file("ckpts/big.safetensors")) == loop.big)
    let hops = loop.hub.requests().filter { $0.listener == "cdn" && $0.path.contains("hop=") }
    #expect(hops.count <= CurlOptions.maxRedirects, "\(hops.count) hops")
}

/// A body that never ends: the file is cut at its expected size and verified. Before: the
/// writer kept going (3 GiB written for a 36 KB file).
@Test func anEndlessBodyIsCutAtTheExpectedSize() throws {
    let rig = try Rig()
    try rig.fault(["listener": "cdn", "type": "endless", "count": 1])
    try rig.download(rig.bigSpec())
    #expect(FileManager.default.contents(atPath: rig.dir.file("ckpts/big.safetensors")) == rig.big)

    // Without a known size, a bound still holds; the partial never grows past it.
    try rig.fault(["listener": "cdn", "type": "endless", "count": 100])
    var spec = rig.bigSpec()
    spec.path = "ckpts/unknown.safetensors"
    spec.target = rig.dir.file("ckpts/unknown.safetensors")
    spec.size = nil
    spec.sha256 = nil
    var downloader = rig.downloader()
    downloader.unknownSizeLimit = 5 << 20
    #expect(throws: ExecutorError.self) {
        try downloader.run(spec, cancel: CancelFlag(), progress: { _ in }, notice: { _ in })
    }
    let partials = try FileManager.default.contentsOfDirectory(atPath: rig.dir.file("ckpts/.wgpm-partial"))
    for name in partials where name.hasSuffix(".part") {
        let size = try FileManager.default.attributesOfItem(atPath: rig.dir.file("ckpts/.wgpm-partial/\(name)"))[.size] as? Int ?? 0
        #expect(size <= 5 << 20)
    }
    #expect(!FileManager.default.fileExists(atPath: spec.target))
}

/// Metadata that claims a smaller size than the host serves: no byte past the claimed size is
/// written (the partial never grows past it), and the file fails verification instead of
/// being placed. Before: the whole body was written, then refused for its size.
@Test func noByteIsWrittenPastAClaimedSize() throws {
    let rig = try Rig()
    var spec = rig.bigSpec()
    spec.size = 1_000_000
    let most = Mutex<Int64>(0)
    #expect(throws: ExecutorError.self) {
        try rig.downloader().run(spec, cancel: CancelFlag(), progress: { n in most.withLock { $0 = max($0, n) } }, notice: { _ in })
    }
    #expect(most.withLock { $0 } == 1_000_000, "the partial held exactly the claimed size at most")
    #expect(!FileManager.default.fileExists(atPath: spec.target))
    let left = try FileManager.default.contentsOfDirectory(atPath: rig.dir.file("ckpts/.wgpm-partial")).filter { $0.hasSuffix(".part") }
    #expect(left.isEmpty, "the partial that failed verification is deleted")
}

/// A host that keeps serving less than the known size ends in a clear failure after a bounded
/// number of attempts. Before: a loop without end (143 GETs in 90 s), because a restart after
/// a 416 counted as progress.
@Test func aHostThatKeepsServingTooLittleEndsInAClearFailure() throws {
    let rig = try Rig()
    try rig.fault(["listener": "cdn", "type": "short", "size": 1000, "count": 1000])
    let downloader = rig.downloader()
    do {
        try downloader.run(rig.bigSpec(), cancel: CancelFlag(), progress: { _ in }, notice: { _ in })
        Issue.record("expected a failure")
    } catch let error as ExecutorError {
        guard case .gaveUp = error else { Issue.record("got \(error)"); return }
    }
    #expect(rig.cdnGets.count <= 2 * downloader.maxAttempts, "\(rig.cdnGets.count) GETs")
}

/// A web page instead of the file (by Content-Type, or by its first bytes under an octet-stream
/// type) is a retryable error whose bytes are not kept: the retry starts from byte 0 rather
/// than resuming after the page. Before: the page was written into the partial, the transfer
/// resumed behind it, and the file failed verification after a full download.
@Test(arguments: ["html", "garbage_start"])
func aWebPageInsteadOfTheFileIsNotKept(_ fault: String) throws {
    let rig = try Rig()
    try rig.fault(["listener": "cdn", "method": "GET", "type": fault, "count": 1])
    let notices = Mutex<[String]>([])
    try rig.downloader().run(rig.bigSpec(), cancel: CancelFlag(), progress: { _ in },
                             notice: { line in notices.withLock { $0.append(line) } })
    #expect(FileManager.default.contents(atPath: rig.dir.file("ckpts/big.safetensors")) == rig.big)
    #expect(notices.withLock { $0 }.filter { $0.contains("nothing of it was kept") }.count == 1, "\(notices.withLock { $0 })")
    // (A request the client abandons mid-body is not in the fake Hub's log; the retry is.)
    #expect(rig.cdnGets.last?.range == nil, "nothing of the page was kept to resume after")
}

/// A symlink or hard link planted at the partial file's name is never written through: the
/// victim keeps its bytes. Before: the partial was opened following the link, and the victim
/// was appended to (or truncated and overwritten).
@Test(arguments: ["symlink", "hardlink"])
func aLinkPlantedInThePartialFolderIsNotFollowed(_ kind: String) throws {
    let rig = try Rig()
    let victim = try rig.dir.write("victim.txt", "precious")
    let folder = rig.dir.file("ckpts/.wgpm-partial")
    try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
    let planted = folder + "/" + Downloader.partialName(rig.bigSpec())
    #expect((kind == "symlink" ? symlink(victim, planted) : link(victim, planted)) == 0)
    try rig.download(rig.bigSpec())
    #expect(try String(contentsOfFile: victim, encoding: .utf8) == "precious")
    #expect(FileManager.default.contents(atPath: rig.dir.file("ckpts/big.safetensors")) == rig.big)
}

/// `.wgpm-partial` itself must be a real folder. Before: a symlink there sent the partial
/// file (and its final rename) wherever it pointed.
@Test func aSymlinkedPartialFolderIsRefused() throws {
    let rig = try Rig()
    let outside = rig.dir.file("outside")
    try FileManager.default.createDirectory(atPath: outside, withIntermediateDirectories: true)
    try FileManager.default.createDirectory(atPath: rig.dir.file("ckpts"), withIntermediateDirectories: true)
    #expect(symlink(outside, rig.dir.file("ckpts/.wgpm-partial")) == 0)
    #expect(throws: ExecutorError.self) { try rig.download(rig.bigSpec()) }
    #expect(try FileManager.default.contentsOfDirectory(atPath: outside).isEmpty)
    #expect(rig.cdnGets.isEmpty)
}

/// A folder inside ckpts that is a symlink leading outside is refused unless the user listed
/// its target in linked_folders; then it is used.
@Test func aSymlinkedFolderLeadingOutsideNeedsLinkedFolders() throws {
    let rig = try Rig()
    let outside = rig.dir.file("elsewhere")
    try FileManager.default.createDirectory(atPath: outside, withIntermediateDirectories: true)
    try FileManager.default.createDirectory(atPath: rig.dir.file("ckpts"), withIntermediateDirectories: true)
    #expect(symlink(outside, rig.dir.file("ckpts/sub")) == 0)
    var spec = rig.bigSpec()
    spec.path = "ckpts/sub/big.safetensors"
    spec.target = rig.dir.file("ckpts/sub/big.safetensors")
    let mapper = PathMapper(ckpts: rig.dir.file("ckpts"), loras: rig.dir.file("loras"))
    var downloader = rig.downloader()
    downloader.confinement = Confinement(mapper: mapper)
    do {
        try downloader.run(spec, cancel: CancelFlag(), progress: { _ in }, notice: { _ in })
        Issue.record("expected a refusal")
    } catch let error as ExecutorError {
        #expect("\(error)".contains("linked_folders"), "\(error)")
    }
    #expect(try FileManager.default.contentsOfDirectory(atPath: outside).isEmpty)

    downloader.confinement = Confinement(mapper: mapper, linkedFolders: [outside])
    try downloader.run(spec, cancel: CancelFlag(), progress: { _ in }, notice: { _ in })
    #expect(FileManager.default.contents(atPath: outside + "/big.safetensors") == rig.big)
}

/// A queued job is checked again before it runs: a path that climbs out, or a target that is
/// not where its path belongs (an altered queue), does nothing.
@Test func aCraftedJobIsRefusedBeforeAnyEffect() throws {
    let rig = try Rig()
    let state = try StateDatabase(directory: rig.dir.file("state"))
    var climbing = rig.bigSpec()
    climbing.path = "ckpts/../../escaped.safetensors"
    climbing.target = rig.dir.file("ckpts/../../escaped.safetensors")
    var moved = rig.bigSpec()
    moved.target = rig.dir.file("moved.safetensors")
    var remove = JobSpec(kind: .remove, path: "ckpts/../victim.txt", target: rig.dir.file("victim.txt"), replaces: false)
    try rig.dir.write("victim.txt", "precious")
    try state.recordManaged(remove.path, at: 1)
    remove.replaces = false
    let specs = [climbing, moved, remove]
    try state.enqueue(specs.map { ($0.id, $0.kind.rawValue, $0.path, $0.encoded(), $0.size) }, at: 1)
    let mapper = PathMapper(ckpts: rig.dir.file("ckpts"), loras: rig.dir.file("loras"))
    let runner = QueueRunner(state: state, downloader: rig.downloader(), workers: 1, minFreeBytes: 0,
                             confinement: Confinement(mapper: mapper), notice: { _ in }, onJobEnd: { _, _ in })
    let summary = try runner.run(cancel: CancelFlag(), board: nil)
    #expect(summary.failed.count == 3)
    #expect(summary.failed.allSatisfy { $0.error.contains("refusing to write") }, "\(summary.failed)")
    #expect(!FileManager.default.fileExists(atPath: climbing.target))
    #expect(!FileManager.default.fileExists(atPath: moved.target))
    #expect(try String(contentsOfFile: rig.dir.file("victim.txt"), encoding: .utf8) == "precious")
    #expect(rig.cdnGets.isEmpty)
}

/// A full disk is not retried and not blamed on a read-only filesystem. Before: five retries,
/// then "check that the folder … is not on a read-only filesystem". Needs root (a small tmpfs).
@Test func aFullDiskIsReportedAtOnce() throws {
    let rig = try Rig()
    try withTmpfs(at: rig.dir.file("ckpts"), size: "1m") {
        do {
            try rig.download(rig.bigSpec())
            Issue.record("expected a failure")
        } catch let error as ExecutorError {
            #expect(error == .diskFull(path: rig.dir.file("ckpts/.wgpm-partial/" + Downloader.partialName(rig.bigSpec()))), "\(error)")
            #expect(!"\(error)".contains("read-only"))
        }
    }
    #expect(rig.sleeper.waits.isEmpty, "not retried")
    #expect(rig.cdnGets.count == 1)
}

/// A source's claim is checked before a link is placed: a same-size blob whose name claims the
/// wanted sha256 but whose bytes differ is not linked, is recorded as bad, and the job
/// downloads instead. Before: it was linked and apply said "done".
@Test func aSourceWhoseClaimIsWrongIsNotLinkedAndTheJobDownloads() throws {
    let rig = try Rig()
    let state = try StateDatabase(directory: rig.dir.file("state"))
    var corrupt = rig.big
    corrupt[2_000_000] ^= 0xFF
    let blob = try rig.dir.write("hf/blobs/\(sha256Hex(rig.big))", corrupt)
    let big = rig.bigSpec()
    let spec = JobSpec(kind: .link, path: big.path, target: big.target, url: big.url, repo: big.repo, commit: big.commit,
                       size: big.size, sha256: big.sha256, linkFrom: blob, linkMode: .symlink, basis: "sha256", replaces: false)
    #expect(throws: ExecutorError.self) { try Linker(state: state).run(spec) }
    #expect(FileManager.default.fileExists(atPath: big.target) == false)
    let stamp = try #require(LocalFileSystem().stat(blob))
    #expect(try state.badSources()[blob]?.inode == stamp.inode, "recorded as bad")

    try state.enqueue([(spec.id, spec.kind.rawValue, spec.path, spec.encoded(), spec.size)], at: 1)
    let notices = Mutex<[String]>([])
    let runner = QueueRunner(state: state, downloader: rig.downloader(), workers: 1, minFreeBytes: 0,
                             notice: { line in notices.withLock { $0.append(line) } }, onJobEnd: { _, _ in })
    let summary = try runner.run(cancel: CancelFlag(), board: nil)
    #expect(summary.failed.isEmpty && summary.completed == [big.path])
    #expect(FileManager.default.contents(atPath: big.target) == rig.big)
    #expect(LocalFileSystem().lstat(big.target)?.kind == .file, "downloaded, not linked")
    #expect(notices.withLock { $0 }.contains { $0.contains("downloading instead") })
    #expect(FileManager.default.contents(atPath: blob) == corrupt, "the source is left as it is")
}

/// A filename match without a known hash is checked for its format before it is linked: an
/// HTML page saved under a model's name is not installed.
@Test func anUnverifiedSourceThatIsAWebPageIsNotLinked() throws {
    let dir = try TempDir("link-format")
    defer { dir.remove() }
    let page = Data("<!DOCTYPE html><html><body>Sign in</body></html>".utf8)
    let source = try dir.write("store/style.safetensors", page)
    let spec = JobSpec(kind: .link, path: "loras/style.safetensors", target: dir.file("loras/style.safetensors"),
                       size: Int64(page.count), linkFrom: source, linkMode: .symlink, basis: "filename, unverified", replaces: false)
    do {
        try Linker().run(spec)
        Issue.record("expected a refusal")
    } catch let error as ExecutorError {
        guard case .badContent(_, _, let reason) = error else { Issue.record("got \(error)"); return }
        #expect(reason.contains("HTML page"))
    }
    #expect(LocalFileSystem().lstat(spec.target) == nil)
}

/// A job whose target already holds its content (a stale plan, the same plan twice) is not
/// downloaded again. Before: the file was fetched a second time.
@Test func aFinishedJobIsNotDownloadedAgain() throws {
    let rig = try Rig()
    let state = try StateDatabase(directory: rig.dir.file("state"))
    let spec = rig.bigSpec()
    let row = [(spec.id, spec.kind.rawValue, spec.path, spec.encoded(), spec.size)]
    let runner = QueueRunner(state: state, downloader: rig.downloader(), workers: 1, minFreeBytes: 0,
                             notice: { _ in }, onJobEnd: { _, _ in })
    try state.enqueue(row, at: 1)
    _ = try runner.run(cancel: CancelFlag(), board: nil)
    #expect(try state.enqueue(row, at: 2) == 1, "the done job is pending again")
    let again = try runner.run(cancel: CancelFlag(), board: nil)
    #expect(again.completed == [spec.path] && again.bytesDownloaded == 0)
    #expect(rig.cdnGets.count == 1)
    #expect(FileManager.default.contents(atPath: spec.target) == rig.big)
}

/// Admission and claim are one transaction, and a late failure report cannot overwrite a job
/// that another worker holds. Before: `failJob` set any job failed, whoever ran it.
@Test func theQueueGuardsItsTransitions() throws {
    let dir = try TempDir("queue")
    defer { dir.remove() }
    let state = try StateDatabase(directory: dir.file("state"))
    let jobs = ["a", "b"].map { (id: $0, kind: "download", path: "ckpts/\($0)", spec: "{}", bytesTotal: Int64?.none) }
    try state.enqueue(jobs, at: 1)
    let claim = try state.claimNextJob(pid: 4242, at: 2) { waiting in
        #expect(waiting.map(\.id) == ["a", "b"])
        return ["a": "does not fit"]
    }
    #expect(claim.refused.map(\.job.id) == ["a"])
    #expect(claim.job?.id == "b" && claim.job?.state == .running)
    try state.failJob("b", error: "late report", at: 3, owner: 1)
    try state.finishJob("b", bytes: 0, at: 3, owner: 1)
    let byID = Dictionary(uniqueKeysWithValues: try state.jobs().map { ($0.id, $0) })
    #expect(byID["a"]?.state == .failed && byID["a"]?.lastError == "does not fit")
    #expect(byID["b"]?.state == .running && byID["b"]?.ownerPID == 4242, "only its owner may end it")
}

/// Failures read as what happened: a header over libcurl's limit is not "Out of memory", and
/// a message about a transfer names the host and path, never an empty "()" nor the signed query.
@Test func transferFailuresArePlainText() throws {
    let rig = try Rig()
    try rig.fault(["listener": "cdn", "type": "huge_header", "count": 100])
    do {
        try rig.download(rig.bigSpec())
        Issue.record("expected a failure")
    } catch let error as ExecutorError {
        let text = "\(error)"
        #expect(text.contains("header larger than wgpm accepts"), "\(text)")
        #expect(!text.lowercased().contains("out of memory"))
    }
    #expect(displayURL("http://localhost:1/lfs/abc?Expires=1&Signature=secret") == "http://localhost:1/lfs/abc")
}

/// The lock file in `.wgpm-partial` is truncated and rewritten when taken: a hard link planted
/// at its name must not make that land in someone else's file. Before: the victim was
/// overwritten with "pid N state …".
@Test func aHardLinkPlantedAtTheLockFileIsNotWrittenThrough() throws {
    let dir = try TempDir("lockfile")
    defer { dir.remove() }
    let victim = try dir.write("victim.txt", "precious")
    try FileManager.default.createDirectory(atPath: dir.file("ckpts/.wgpm-partial"), withIntermediateDirectories: true)
    #expect(link(victim, dir.file("ckpts/.wgpm-partial/.lock")) == 0)
    let lock = ProcessLock(path: dir.file("ckpts/.wgpm-partial/.lock"), what: "ckpts")
    #expect(try lock.tryAcquire(note: "test"))
    lock.release()
    #expect(try String(contentsOfFile: victim, encoding: .utf8) == "precious")
}

/// A copy is as readable as its source and no more. Before: every copy was 0644, so a source
/// readable only by root became readable by everyone in loras/.
@Test func aCopyKeepsItsSourcesPermissions() throws {
    let dir = try TempDir("copy-mode")
    defer { dir.remove() }
    let content = payload(5000)
    let source = try dir.write("store/private.safetensors", content)
    #expect(chmod(source, 0o600) == 0)
    let spec = JobSpec(kind: .link, path: "loras/private.safetensors", target: dir.file("loras/private.safetensors"),
                       size: Int64(content.count), sha256: sha256Hex(content), linkFrom: source, linkMode: .copy,
                       basis: "sha256", replaces: false)
    try Linker().run(spec)
    var st = stat()
    #expect(stat(spec.target, &st) == 0)
    #expect(st.st_mode & 0o777 == 0o600)
    #expect(FileManager.default.contents(atPath: spec.target) == content)
}
