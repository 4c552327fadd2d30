import Testing
@testable import Planner

let sha = String(repeating: "a", count: 64)
let otherSHA = String(repeating: "b", count: 64)
let sha1 = String(repeating: "c", count: 40)

func lfs(_ path: String = "ckpts/model.safetensors", size: Int64 = 100, sha256: String = sha) -> DesiredFile {
    DesiredFile(path: path, url: "https://huggingface.co/O/R/resolve/main/\(path.split(separator: "/").last!)",
                repo: "O/R", commit: String(repeating: "1", count: 40),
                expected: FileIdentity(size: size, sha256: sha256), wantedBy: ["t2v"])
}

func small(_ path: String = "ckpts/umt5-xxl/tokenizer.json") -> DesiredFile {
    DesiredFile(path: path, url: "https://huggingface.co/O/R/resolve/main/umt5-xxl/tokenizer.json",
                expected: FileIdentity(size: 10, gitSHA1: sha1), wantedBy: ["t2v"])
}

struct Case: CustomTestStringConvertible, Sendable {
    var name: String
    var desired: [DesiredFile]
    var observed: ObservedState
    var prune = false
    var linkMode: LinkMode = .symlink
    /// Expected (kind, path, fragment of the reason or basis)
    var actions: [(ActionKind, String, String)]
    var unchanged: [String] = []
    var testDescription: String { name }
}

let good = FileContent(size: 100, sha256: sha)
let cases: [Case] = [
    Case(name: "missing file is downloaded", desired: [lfs()], observed: ObservedState(),
         actions: [(.download, "ckpts/model.safetensors", "download")]),
    Case(name: "right LFS file is unchanged", desired: [lfs()],
         observed: ObservedState(paths: ["ckpts/model.safetensors": .file(good)]),
         actions: [], unchanged: ["ckpts/model.safetensors"]),
    Case(name: "right small file by git sha1 is unchanged", desired: [small()],
         observed: ObservedState(paths: ["ckpts/umt5-xxl/tokenizer.json": .file(FileContent(size: 10, gitSHA1: sha1))]),
         actions: [], unchanged: ["ckpts/umt5-xxl/tokenizer.json"]),
    Case(name: "wrong size is replaced", desired: [lfs()],
         observed: ObservedState(paths: ["ckpts/model.safetensors": .file(FileContent(size: 99))]),
         actions: [(.replace, "ckpts/model.safetensors", "size differs: 99 B on disk, 100 B expected; download")]),
    Case(name: "wrong sha256 is replaced", desired: [lfs()],
         observed: ObservedState(paths: ["ckpts/model.safetensors": .file(FileContent(size: 100, sha256: otherSHA))]),
         actions: [(.replace, "ckpts/model.safetensors", "sha256 differs: bbbbbbbbbbbb… on disk, aaaaaaaaaaaa… expected; download")]),
    Case(name: "unhashed content is not trusted", desired: [lfs()],
         observed: ObservedState(paths: ["ckpts/model.safetensors": .file(FileContent(size: 100))]),
         actions: [(.replace, "ckpts/model.safetensors", "content not verified")]),
    Case(name: "symlink to the right content is unchanged", desired: [lfs()],
         observed: ObservedState(paths: ["ckpts/model.safetensors": .symlink(target: "/srv/x", content: good)]),
         actions: [], unchanged: ["ckpts/model.safetensors"]),
    Case(name: "dangling symlink is replaced", desired: [lfs()],
         observed: ObservedState(paths: ["ckpts/model.safetensors": .symlink(target: "/gone", content: nil)]),
         actions: [(.replace, "ckpts/model.safetensors", "dangling link to /gone")]),
    Case(name: "symlink to other content is replaced", desired: [lfs()],
         observed: ObservedState(paths: ["ckpts/model.safetensors": .symlink(target: "/srv/y", content: FileContent(size: 5))]),
         actions: [(.replace, "ckpts/model.safetensors", "link to the wrong content")]),
    Case(name: "directory in the way is a conflict", desired: [lfs()],
         observed: ObservedState(paths: ["ckpts/model.safetensors": .directory]),
         actions: [(.conflict, "ckpts/model.safetensors", "directory is in the way")]),
    Case(name: "special file in the way is a conflict", desired: [lfs()],
         observed: ObservedState(paths: ["ckpts/model.safetensors": .other]),
         actions: [(.conflict, "ckpts/model.safetensors", "special file")]),
    Case(name: "sha256 match in a source is linked", desired: [lfs()],
         observed: ObservedState(candidates: ["ckpts/model.safetensors": [
            ReuseCandidate(source: "dir", path: "/m/other-name.bin", content: good)]]),
         actions: [(.link, "ckpts/model.safetensors", "sha256")]),
    Case(name: "URL match is linked", desired: [lfs()],
         observed: ObservedState(candidates: ["ckpts/model.safetensors": [
            ReuseCandidate(source: "invokeai", path: "/i/x.safetensors", content: FileContent(size: 100),
                           sourceURL: "https://huggingface.co/O/R/blob/main/model.safetensors?download=true")]]),
         actions: [(.link, "ckpts/model.safetensors", "(url)")]),
    Case(name: "URL match whose known hash differs is not used", desired: [lfs()],
         observed: ObservedState(candidates: ["ckpts/model.safetensors": [
            ReuseCandidate(source: "invokeai", path: "/i/x.safetensors", content: FileContent(size: 100, sha256: otherSHA),
                           sourceURL: "https://huggingface.co/O/R/resolve/main/model.safetensors")]]),
         actions: [(.download, "ckpts/model.safetensors", "download")]),
    Case(name: "filename match without any hash is linked, unverified",
         desired: [DesiredFile(path: "loras/wan/x.safetensors", url: "https://civitai.example/x", expected: FileIdentity(size: 7))],
         observed: ObservedState(candidates: ["loras/wan/x.safetensors": [
            ReuseCandidate(source: "dir", path: "/m/x.safetensors", content: FileContent(size: 7))]]),
         actions: [(.link, "loras/wan/x.safetensors", "filename, unverified")]),
    Case(name: "filename match is never used when the hash is known and differs", desired: [lfs()],
         observed: ObservedState(candidates: ["ckpts/model.safetensors": [
            ReuseCandidate(source: "dir", path: "/m/model.safetensors", content: FileContent(size: 100, sha256: otherSHA))]]),
         actions: [(.download, "ckpts/model.safetensors", "download")]),
    Case(name: "size mismatch candidate is ignored", desired: [lfs()],
         observed: ObservedState(candidates: ["ckpts/model.safetensors": [
            ReuseCandidate(source: "dir", path: "/m/a", content: FileContent(size: 101, sha256: sha))]]),
         actions: [(.download, "ckpts/model.safetensors", "download")]),
    Case(name: "wrong file is replaced from a source", desired: [lfs()],
         observed: ObservedState(paths: ["ckpts/model.safetensors": .file(FileContent(size: 3))],
                                 candidates: ["ckpts/model.safetensors": [ReuseCandidate(source: "hf_cache", path: "/c/blob", content: good)]]),
         actions: [(.replace, "ckpts/model.safetensors", "symlink from hf_cache (sha256)")]),
    Case(name: "a hardlink across filesystems becomes a copy, and the plan says why", desired: [lfs()],
         observed: ObservedState(candidates: ["ckpts/model.safetensors": [
            ReuseCandidate(source: "dir", path: "/other/x.bin", content: good, filesystemID: "dev:2")]],
                                 filesystemOf: ["ckpts/model.safetensors": FilesystemInfo(id: "dev:1", mountPoint: "/", freeBytes: 1000)]),
         linkMode: .hardlink, actions: [(.link, "ckpts/model.safetensors", "copy from dir (sha256); a hardlink cannot cross filesystems")]),
    Case(name: "prune removes only wgpm's own paths that are no longer wanted", desired: [lfs()],
         observed: ObservedState(paths: ["ckpts/model.safetensors": .file(good), "ckpts/old.safetensors": .file(FileContent(size: 1)),
                                         "ckpts/gone.safetensors": .missing],
                                 managedPaths: ["ckpts/old.safetensors", "ckpts/model.safetensors", "ckpts/gone.safetensors"]),
         prune: true, actions: [(.remove, "ckpts/old.safetensors", "no longer wanted")], unchanged: ["ckpts/model.safetensors"]),
    Case(name: "without --prune nothing is removed", desired: [lfs()],
         observed: ObservedState(paths: ["ckpts/model.safetensors": .file(good), "ckpts/old.safetensors": .file(FileContent(size: 1))],
                                 managedPaths: ["ckpts/old.safetensors"]),
         actions: [], unchanged: ["ckpts/model.safetensors"]),
    Case(name: "a file Wan2GP does not download itself is still fetched, and said so",
         desired: [DesiredFile(path: "ckpts/ovi.safetensors", url: "https://huggingface.co/O/R/resolve/main/ovi.safetensors",
                               expected: FileIdentity(size: 1, sha256: sha), downloadable: false)],
         observed: ObservedState(), actions: [(.download, "ckpts/ovi.safetensors", "Wan2GP does not download")]),
]

@Test(arguments: cases)
func plannerCase(_ c: Case) {
    let plan = makePlan(desired: c.desired, observed: c.observed, options: PlanOptions(prune: c.prune, linkMode: c.linkMode))
    #expect(plan.actions.count == c.actions.count, "\(plan.actions.map { "\($0.kind) \($0.path): \($0.reason)" })")
    for (action, (kind, path, fragment)) in zip(plan.actions, c.actions) {
        #expect(action.kind == kind)
        #expect(action.path == path)
        #expect(action.reason.contains(fragment), "reason was: \(action.reason)")
    }
    #expect(plan.unchanged == c.unchanged)
    #expect(plan.summary.unchanged == c.unchanged.count)
}

@Test func summaryCountsBytesPerFilesystem() {
    let fs = FilesystemInfo(id: "dev:1", mountPoint: "/srv", freeBytes: 150)
    let desired = [lfs("ckpts/a.safetensors", size: 100), lfs("loras/wan/b.safetensors", size: 80, sha256: otherSHA),
                   lfs("ckpts/c.safetensors", size: 100)]
    let observed = ObservedState(
        candidates: ["ckpts/c.safetensors": [ReuseCandidate(source: "d", path: "/x", content: good)]],
        filesystemOf: ["ckpts/a.safetensors": fs, "loras/wan/b.safetensors": fs, "ckpts/c.safetensors": fs])
    let plan = makePlan(desired: desired, observed: observed)
    #expect(plan.summary.count(.download) == 2)
    #expect(plan.summary.count(.link) == 1)
    #expect(plan.summary.downloadBytes == 180)
    #expect(plan.summary.reusedBytes == 100)
    #expect(plan.summary.filesystems.count == 1)
    #expect(plan.summary.filesystems[0].downloadBytes == 180)
    #expect(plan.summary.filesystems[0].fits == false)

    // min_free_gb counts: 180 bytes fit in 200 free, but not while 50 must stay free.
    let roomy = FilesystemInfo(id: "dev:1", mountPoint: "/srv", freeBytes: 200)
    let spacious = ObservedState(filesystemOf: ["ckpts/a.safetensors": roomy, "loras/wan/b.safetensors": roomy])
    let desiredTwo = Array(desired.prefix(2))
    #expect(makePlan(desired: desiredTwo, observed: spacious).summary.filesystems[0].fits)
    #expect(makePlan(desired: desiredTwo, observed: spacious, options: PlanOptions(reserveBytes: 20)).summary.filesystems[0].fits)
    let tight = makePlan(desired: desiredTwo, observed: spacious, options: PlanOptions(reserveBytes: 21)).summary.filesystems[0]
    #expect(!tight.fits && tight.reserveBytes == 21)

    // Bytes a partial file holds are on the disk already: only the rest needs room.
    var resumed = observed
    resumed.partialBytes = ["ckpts/a.safetensors": 60, "loras/wan/b.safetensors": 500]  // more than its size counts as its size
    let again = makePlan(desired: desired, observed: resumed).summary
    #expect(again.downloadBytes == 180 && again.partialBytes == 140)
    #expect(again.filesystems[0].downloadBytes == 40 && again.filesystems[0].fits)
}

/// A small deterministic generator (SplitMix64) so the property test is reproducible.
struct SplitMix: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E3779B97F4A7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58476D1CE4E5B9
        z = (z ^ (z >> 27)) &* 0x94D049BB133111EB
        return z ^ (z >> 31)
    }
}

/// What apply would leave behind: every fetched path holds the expected content, removed paths are gone.
func simulateApply(_ plan: Plan, desired: [DesiredFile], observed: ObservedState) -> ObservedState {
    var after = observed
    let byPath = Dictionary(uniqueKeysWithValues: desired.map { ($0.path, $0) })
    for action in plan.actions {
        switch action.kind {
        case .download, .replace, .link:
            let e = byPath[action.path]!.expected
            let content = FileContent(size: e.size ?? 0, sha256: e.sha256, gitSHA1: e.gitSHA1)
            if case .link(_, let from, _, .symlink)? = action.fetch {
                after.paths[action.path] = .symlink(target: from, content: content)
            } else {
                after.paths[action.path] = .file(content)
            }
            after.managedPaths.insert(action.path)
        case .remove:
            after.paths[action.path] = .missing
            after.managedPaths.remove(action.path)
        case .conflict:
            break
        }
    }
    return after
}

@Test(arguments: 0..<200)
func applyThenPlanConverges(_ seed: Int) {
    var rng = SplitMix(state: UInt64(seed))
    var desired: [DesiredFile] = []
    var observed = ObservedState()
    for i in 0..<Int.random(in: 1...12, using: &rng) {
        let path = "ckpts/f\(i).bin"
        let useLFS = Bool.random(using: &rng)
        let size = Int64.random(in: 1...1000, using: &rng)
        let file = useLFS ? lfs(path, size: size, sha256: String(repeating: "\(i % 10)", count: 64))
            : DesiredFile(path: path, url: "https://huggingface.co/O/R/resolve/main/f\(i).bin",
                          expected: FileIdentity(size: size, gitSHA1: String(repeating: "\(i % 10)", count: 40)))
        desired.append(file)
        let right = FileContent(size: size, sha256: file.expected.sha256, gitSHA1: file.expected.gitSHA1)
        switch Int.random(in: 0..<7, using: &rng) {
        case 0: observed.paths[path] = .missing
        case 1: observed.paths[path] = .file(right)
        case 2: observed.paths[path] = .file(FileContent(size: size + 1))
        case 3: observed.paths[path] = .symlink(target: "/gone", content: nil)
        case 4: observed.paths[path] = .symlink(target: "/ok", content: right)
        case 5: observed.paths[path] = .directory
        default: observed.candidates[path] = [ReuseCandidate(source: "s", path: "/s/\(i)", content: right)]
        }
    }
    for j in 0..<Int.random(in: 0...3, using: &rng) {
        let path = "ckpts/old\(j).bin"
        observed.paths[path] = .file(FileContent(size: 1))
        observed.managedPaths.insert(path)
    }
    let options = PlanOptions(prune: true)
    let first = makePlan(desired: desired, observed: observed, options: options)
    #expect(first == makePlan(desired: desired, observed: observed, options: options), "planning is deterministic")
    #expect(first.actions.map(\.path) == first.actions.map(\.path).sorted())
    let after = simulateApply(first, desired: desired, observed: observed)
    let second = makePlan(desired: desired, observed: after, options: options)
    #expect(second.actions.allSatisfy { $0.kind == .conflict }, "\(second.actions.map { "\($0.kind) \($0.path)" })")
    #expect(second.actions.count == first.summary.count(.conflict))
    #expect(second.summary.unchanged == desired.count - second.actions.count)
}

/// One file wgpm cannot read (root-owned, mode 600 after a `sudo` run) is that path's conflict;
/// every other path is planned as usual.
@Test func anUnreadableFileIsAConflictAndTheRestIsPlanned() {
    let desired = [lfs("ckpts/a.safetensors"), lfs("ckpts/locked.safetensors"), lfs("ckpts/z.safetensors")]
    let observed = ObservedState(paths: ["ckpts/a.safetensors": .file(good),
                                         "ckpts/locked.safetensors": .unreadable(reason: "permission denied")])
    let plan = makePlan(desired: desired, observed: observed)
    #expect(plan.actions.map { "\($0.kind) \($0.path)" } == ["conflict ckpts/locked.safetensors", "download ckpts/z.safetensors"])
    #expect(plan.actions.first?.reason == "cannot read: permission denied; not touched — fix its owner or permissions")
    #expect(plan.actions.first?.fetch == nil, "nothing is fetched for it: apply leaves it alone")
    #expect(plan.unchanged == ["ckpts/a.safetensors"])
    #expect(!satisfies(.unreadable(reason: "permission denied"), good.expectedIdentity))
}

/// A file with no published hash is judged by its first bytes: an HTML login page saved under a
/// model's name is wrong content even when its size is what was asked for (or unknown).
@Test func aFileWhoseStartDoesNotFitItsFormatIsReplaced() {
    let noHash = DesiredFile(path: "loras/x.safetensors", url: "https://civitai.example/api/download/models/1",
                             expected: FileIdentity(size: nil), wantedBy: ["files:"])
    let html = FileContent(size: 5120, formatProblem: "it is an HTML page, not a .safetensors file")
    let plan = makePlan(desired: [noHash], observed: ObservedState(paths: ["loras/x.safetensors": .file(html)]))
    #expect(plan.actions.map(\.kind) == [.replace])
    #expect(plan.actions.first?.reason == "it is an HTML page, not a .safetensors file; download")
    // Through a link it is the link's content that is wrong.
    let linked = makePlan(desired: [noHash], observed: ObservedState(paths: ["loras/x.safetensors": .symlink(target: "/d/x", content: html)]))
    #expect(linked.actions.first?.reason.hasPrefix("link to the wrong content (it is an HTML page") == true)
    // A file whose start fits is still accepted on size alone.
    let fine = makePlan(desired: [noHash], observed: ObservedState(paths: ["loras/x.safetensors": .file(FileContent(size: 5120))]))
    #expect(fine.actions.isEmpty && fine.unchanged == ["loras/x.safetensors"])
    // With a hash, the hash alone decides.
    let hashed = makePlan(desired: [lfs()], observed: ObservedState(paths: ["ckpts/model.safetensors": .file(
        FileContent(size: 100, sha256: sha, formatProblem: "it does not start with a safetensors header"))]))
    #expect(hashed.actions.isEmpty)
}

extension FileContent {
    var expectedIdentity: FileIdentity { FileIdentity(size: size, sha256: sha256, gitSHA1: gitSHA1) }
}

/// A folder this user cannot write blocks the plan when something is to be written below it,
/// and only then (issue 12: blocked is not "changes to review").
@Test func anUnwritableFolderBlocksOnlyWhatWritesBelowIt() {
    var observed = ObservedState(paths: ["ckpts/model.safetensors": .file(good)])
    observed.unwritableFolders = ["loras": "/srv/loras is not writable by this user (permission denied)"]
    let untouched = makePlan(desired: [lfs()], observed: observed)
    #expect(untouched.blockers.isEmpty && !untouched.isBlocked, "nothing is written under loras/")
    let writing = makePlan(desired: [lfs(), lfs("loras/wan/b.safetensors", sha256: otherSHA)], observed: observed)
    #expect(writing.isBlocked)
    #expect(writing.blockers == ["/srv/loras is not writable by this user (permission denied): apply would fail on the 1 file to write there — fix the folder's owner or permissions, or run wgpm as the user that owns it"])
}
