import Crypto
import Foundation
import Planner
import State
import Testing
import TestSupport
@testable import Inventory

func sha256Hex(_ data: Data) -> String { SHA256.hash(data: data).map { String(format: "%02x", $0) }.joined() }

@Test func observesEveryKindOfPathAndHashesOnlyWhatCanMatch() throws {
    let dir = try TempDir("inv")
    defer { dir.remove() }
    let right = Data(repeating: 1, count: 5000)
    let wrongSize = Data(repeating: 2, count: 10)
    let small = Data("{}\n".utf8)
    try dir.write("ckpts/good.safetensors", right)
    try dir.write("ckpts/short.safetensors", wrongSize)
    try dir.write("ckpts/cfg/config.json", small)
    try dir.write("elsewhere/target.bin", right)
    try FileManager.default.createSymbolicLink(atPath: dir.file("ckpts/linked.safetensors"), withDestinationPath: dir.file("elsewhere/target.bin"))
    try FileManager.default.createSymbolicLink(atPath: dir.file("ckpts/dangling.safetensors"), withDestinationPath: dir.file("nowhere"))
    try FileManager.default.createDirectory(atPath: dir.file("ckpts/dir.safetensors"), withIntermediateDirectories: true)
    let sha = sha256Hex(right)
    func lfs(_ name: String) -> DesiredFile {
        DesiredFile(path: "ckpts/\(name)", url: "https://huggingface.co/o/r/resolve/main/\(name)", expected: FileIdentity(size: 5000, sha256: sha))
    }
    let desired = [lfs("good.safetensors"), lfs("short.safetensors"), lfs("linked.safetensors"), lfs("dangling.safetensors"),
                   lfs("dir.safetensors"), lfs("missing.safetensors"),
                   DesiredFile(path: "ckpts/cfg/config.json", url: "https://huggingface.co/o/r/resolve/main/cfg/config.json",
                               expected: FileIdentity(size: 3, gitSHA1: "b38bea3b7c6e7f9c5a1b2f4d3cb1c1b50b0b1c1a"))]
    let fs = CountingFileSystem()
    let state = try StateDatabase(directory: dir.file("state"))
    let inventory = Inventory(fileSystem: fs, state: state, mapper: PathMapper(ckpts: dir.file("ckpts"), loras: dir.file("loras")), workers: 2)
    let (observed, stats) = try inventory.observe(desired)
    #expect(observed.paths["ckpts/good.safetensors"] == .file(FileContent(size: 5000, sha256: sha)))
    #expect(observed.paths["ckpts/short.safetensors"] == .file(FileContent(size: 10)), "a size mismatch is not hashed")
    #expect(observed.paths["ckpts/linked.safetensors"] == .symlink(target: dir.file("elsewhere/target.bin"), content: FileContent(size: 5000, sha256: sha)))
    #expect(observed.paths["ckpts/dangling.safetensors"] == .symlink(target: dir.file("nowhere"), content: nil))
    #expect(observed.paths["ckpts/dir.safetensors"] == .directory)
    #expect(observed.paths["ckpts/missing.safetensors"] == .missing)
    // git blob sha1 of "{}\n" as git hash-object prints it
    guard case .file(let cfg)? = observed.paths["ckpts/cfg/config.json"] else { Issue.record("config.json not observed"); return }
    #expect(cfg.gitSHA1 == "0967ef424bce6791893e9a57bb952f80fd536e93")
    #expect(cfg.sha256 == nil)
    #expect(stats.filesHashed == 3)
    #expect(Set(fs.hashed.map { ($0 as NSString).lastPathComponent }) == ["good.safetensors", "linked.safetensors", "config.json"])
    #expect(observed.filesystemOf["ckpts/good.safetensors"]?.freeBytes ?? 0 > 0)

    // Second observation: everything comes from the hash cache.
    fs.hashed = []
    let (again, stats2) = try inventory.observe(desired)
    #expect(fs.hashed.isEmpty)
    #expect(stats2.filesHashed == 0 && stats2.hashCacheHits == 3)
    #expect(again.paths == observed.paths)

    // A changed file (new mtime and content) is hashed again.
    try dir.write("ckpts/good.safetensors", Data(repeating: 3, count: 5000))
    let (changed, _) = try inventory.observe(desired)
    #expect(fs.hashed.map { ($0 as NSString).lastPathComponent } == ["good.safetensors"])
    #expect(changed.paths["ckpts/good.safetensors"] == .file(FileContent(size: 5000, sha256: sha256Hex(Data(repeating: 3, count: 5000)))))
}

@Test func hashesLargeFilesInChunksCorrectly() throws {
    let dir = try TempDir("hash")
    defer { dir.remove() }
    var data = Data(count: LocalFileSystem.chunkSize * 2 + 12345)
    data.withUnsafeMutableBytes { buf in for i in 0..<buf.count { buf[i] = UInt8(truncatingIfNeeded: i &* 31 &+ 7) } }
    let path = try dir.write("big.bin", data)
    let result = try LocalFileSystem().hash(path, sha256: true, gitSHA1: true)
    #expect(result.sha256 == sha256Hex(data))
    var sha1 = Insecure.SHA1()
    sha1.update(data: Data("blob \(data.count)\0".utf8))
    sha1.update(data: data)
    #expect(result.gitSHA1 == sha1.finalize().map { String(format: "%02x", $0) }.joined())
}

@Test func corruptStateDatabaseIsReported() throws {
    let dir = try TempDir("state")
    defer { dir.remove() }
    try dir.write("state.sqlite", Data(repeating: 0x41, count: 4096))
    do {
        try StateDatabase(directory: dir.path).open()
        Issue.record("opened a corrupt database")
    } catch let error as StateError {
        #expect("\(error)".contains("move it aside"))
    }
}

/// A file the user cannot read (root-owned, mode 600) is observed as unreadable, with the
/// system's reason; the other paths are observed and hashed as usual, and nothing throws.
@Test func anUnreadableFileIsObservedAsSuchAndTheRestGoesOn() throws {
    let dir = try TempDir("unreadable")
    defer { dir.remove() }
    let right = Data(repeating: 1, count: 5000)
    let sha = sha256Hex(right)
    try dir.write("ckpts/good.safetensors", right)
    let locked = try dir.write("ckpts/locked.safetensors", right)
    try dir.write("elsewhere/target.bin", right)
    try FileManager.default.createSymbolicLink(atPath: dir.file("ckpts/via-link.safetensors"), withDestinationPath: dir.file("elsewhere/target.bin"))
    let noHash = try dir.write("loras/nohash.safetensors", Data(repeating: 0, count: 64))
    func lfs(_ name: String) -> DesiredFile {
        DesiredFile(path: "ckpts/\(name)", url: "https://huggingface.co/o/r/resolve/main/\(name)", expected: FileIdentity(size: 5000, sha256: sha))
    }
    let desired = [lfs("good.safetensors"), lfs("locked.safetensors"), lfs("via-link.safetensors"),
                   DesiredFile(path: "loras/nohash.safetensors", url: "https://example.com/nohash.safetensors")]
    let fs = UnreadableFileSystem(unreadable: [locked, dir.file("elsewhere/target.bin"), noHash])
    let state = try StateDatabase(directory: dir.file("state"))
    let inventory = Inventory(fileSystem: fs, state: state, mapper: PathMapper(ckpts: dir.file("ckpts"), loras: dir.file("loras")), workers: 2)
    let (observed, stats) = try inventory.observe(desired)
    #expect(observed.paths["ckpts/locked.safetensors"] == .unreadable(reason: "permission denied"))
    #expect(observed.paths["ckpts/via-link.safetensors"] == .unreadable(reason: "permission denied (the link points to \(dir.file("elsewhere/target.bin")))"))
    #expect(observed.paths["loras/nohash.safetensors"] == .unreadable(reason: "permission denied"), "the format check's read fails the same way")
    #expect(observed.paths["ckpts/good.safetensors"] == .file(FileContent(size: 5000, sha256: sha)))
    #expect(stats.filesHashed == 1)
    let plan = makePlan(desired: desired, observed: observed)
    #expect(plan.actions.map(\.kind) == [.conflict, .conflict, .conflict])
    #expect(plan.unchanged == ["ckpts/good.safetensors"])
}

/// Files with no hash to compare with have their first 16 bytes checked against their format;
/// files with a hash are not read for it.
@Test func onlyFilesWithoutAHashHaveTheirStartChecked() throws {
    let dir = try TempDir("format")
    defer { dir.remove() }
    let page = Data("<!DOCTYPE html><html><body>Sign in to continue</body></html>".utf8)
    var safetensors = Data([2, 0, 0, 0, 0, 0, 0, 0]) + Data("{}".utf8)
    safetensors += Data(repeating: 0, count: 20)
    try dir.write("loras/login.safetensors", page)
    try dir.write("loras/real.safetensors", safetensors)
    try dir.write("ckpts/hub.safetensors", page)
    let desired = [
        DesiredFile(path: "loras/login.safetensors", url: "https://example.com/login.safetensors"),
        DesiredFile(path: "loras/real.safetensors", url: "https://example.com/real.safetensors",
                    expected: FileIdentity(size: Int64(safetensors.count))),
        DesiredFile(path: "ckpts/hub.safetensors", url: "https://huggingface.co/o/r/resolve/main/hub.safetensors",
                    expected: FileIdentity(size: Int64(page.count), sha256: sha256Hex(page))),
    ]
    let fs = UnreadableFileSystem(unreadable: [])
    let inventory = Inventory(fileSystem: fs, state: nil, mapper: PathMapper(ckpts: dir.file("ckpts"), loras: dir.file("loras")), workers: 1)
    let (observed, _) = try inventory.observe(desired)
    #expect(observed.paths["loras/login.safetensors"] == .file(FileContent(size: Int64(page.count), formatProblem: "it is an HTML page, not a .safetensors file")))
    #expect(observed.paths["loras/real.safetensors"] == .file(FileContent(size: Int64(safetensors.count))))
    #expect(observed.paths["ckpts/hub.safetensors"] == .file(FileContent(size: Int64(page.count), sha256: sha256Hex(page))),
            "a file with a known hash is judged by it, not by its start")
    #expect(fs.prefixReads.map { ($0 as NSString).lastPathComponent }.sorted() == ["login.safetensors", "real.safetensors"])
    let plan = makePlan(desired: desired, observed: observed)
    #expect(plan.actions.map { "\($0.kind) \($0.path)" } == ["replace loras/login.safetensors"])
    #expect(plan.actions.first?.reason.hasPrefix("it is an HTML page, not a .safetensors file") == true)
}

/// A state_directory that cannot be used says which folder, why, and what to do — never
/// SQLite's "unable to open database file" or a Foundation `Error Domain=…` text. (Permission
/// denied needs a non-root user: FaultEndToEndTests runs wgpm as one.)
@Test func aStateDirectoryThatIsNotAFolderIsReportedPlainly() throws {
    let dir = try TempDir("statefile")
    defer { dir.remove() }
    let file = try dir.write("state", "not a folder")
    for (directory, expected) in [
        (file, "cannot use the state directory \(file): it is not a directory. Set state_directory in the config to a writable folder on a local disk, or fix the owner or permissions of \(file)."),
        (file + "/sub", "cannot create the state directory \(file)/sub: \(file) is not a directory. Set state_directory"),
    ] {
        do {
            try StateDatabase(directory: directory).open()
            Issue.record("opened a state database in \(directory)")
        } catch let error as StateError {
            #expect("\(error)".hasPrefix(expected), "\(error)")
            #expect(!"\(error)".contains("Error Domain") && !"\(error)".contains("unable to open"))
        }
    }
    // Missing parents are created, as mkdir -p does.
    try StateDatabase(directory: dir.file("a/b/c")).open()
    #expect(FileManager.default.fileExists(atPath: dir.file("a/b/c/state.sqlite")))
}

/// A root-level LoRA folder of an older Wan2GP lies beside the LoRA folder (where that Wan2GP,
/// run from its directory, reads it); an unmanaged first segment maps to nothing.
@Test func legacyLoraFoldersMapBesideTheLoraFolder() {
    let mapper = PathMapper(ckpts: "/data/ckpts", loras: "/srv/wan/loras")
    #expect(mapper.absolute("loras_i2v/a/b.safetensors") == "/srv/wan/loras_i2v/a/b.safetensors")
    #expect(mapper.absolute("loras/wan/x.safetensors") == "/srv/wan/loras/wan/x.safetensors")
    #expect(mapper.absolute("ckpts/x.bin") == "/data/ckpts/x.bin")
    #expect(mapper.root(of: "loras_flux/x")?.name == "loras_flux")
    #expect(mapper.root(of: "loras_evil/x") == nil)
    #expect(mapper.absolute("loras_evil/x") == "loras_evil/x")
}
