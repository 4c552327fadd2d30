import Crypto
import Foundation
import GRDB
import Inventory
import Planner
import State
import Testing
import TestSupport
@testable import Reuse

func sha256Hex(_ data: Data) -> String { SHA256.hash(data: data).map { String(format: "%02x", $0) }.joined() }
func bytes(_ n: Int, _ seed: UInt8) -> Data { Data((0..<n).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ Int(seed)) }) }

/// An InvokeAI database built from the real schema fixture, with files for its rows.
struct InvokeAIFixture {
    let dir: TempDir
    let db: String
    let models: String
    let lora = bytes(3000, 1), ae = bytes(4000, 2), unet = bytes(5000, 3), vae = bytes(6000, 4), local = bytes(7000, 5), inplace = bytes(8000, 6)

    init() throws {
        dir = try TempDir("invoke")
        db = dir.file("databases/invokeai.db")
        models = dir.file("models")
        try FileManager.default.createDirectory(atPath: dir.file("databases"), withIntermediateDirectories: true)
        let schema = try String(contentsOfFile: repositoryRoot + "/fixtures/invokeai-schema.sql", encoding: .utf8)
        let queue = try DatabaseQueue(path: db)
        try queue.writeWithoutTransaction { db in try db.execute(sql: schema) }
        let inplacePath = try dir.write("elsewhere/juggernaut.safetensors", inplace)
        try queue.writeWithoutTransaction { db in
            // Give row 2's Hub metadata and row 5's sha256 hash the digests of the files made here.
            try db.execute(sql: """
                UPDATE models SET config = json_set(config, '$.source_api_response',
                  replace(replace(json_extract(config, '$.source_api_response'),
                          '70cd7100fed2cfc87bd5888254e1551199e3f426438e7202a3e07dde765a30c9', ?), '335304388', ?))
                WHERE id LIKE '78f825aa%'
                """, arguments: [sha256Hex(ae), "\(ae.count)"])
            try db.execute(sql: "UPDATE models SET config = json_set(config, '$.path', ?, '$.hash', ?) WHERE id LIKE '3daa9b9a%'",
                           arguments: [inplacePath, "sha256:" + sha256Hex(inplace)])
        }
        try dir.write("models/c2add694-bf94-4dc7-bb37-6592d9c862cd/alienzkin-sdxl.safetensors", lora)
        try dir.write("models/78f825aa-a010-4319-aaa1-a30bf4fe3ada/FLUX.1-schnell_ae.safetensors", ae)
        try dir.write("models/36315785-38a2-46ba-9879-b31a9a42f290/unet/diffusion_pytorch_model.fp16.safetensors", unet)
        try dir.write("models/36315785-38a2-46ba-9879-b31a9a42f290/vae/diffusion_pytorch_model.fp16.safetensors", vae)
        try dir.write("models/36315785-38a2-46ba-9879-b31a9a42f290/model_index.json", "{}")
        try dir.write("models/caf8e34b-e074-46ae-b127-c1b4829983c1/add-detail-xl.safetensors", local)
        // Row 7 (sd-1/embedding/EasyNegative.safetensors) has no file: a stale record.
    }
}

@Test func invokeAIRowsOfEveryKind() throws {
    let fx = try InvokeAIFixture()
    defer { fx.dir.remove() }
    var warnings: [String] = []
    let files = try InvokeAISource(database: fx.db, modelsDirectory: fx.models).scan(fileSystem: LocalFileSystem()) { warnings.append($0) }
    #expect(warnings.isEmpty, "\(warnings)")
    let byName = Dictionary(uniqueKeysWithValues: files.map { (($0.path as NSString).lastPathComponent + ($0.path.contains("/unet/") ? "#unet" : $0.path.contains("/vae/") ? "#vae" : ""), $0) })
    #expect(files.count == 6, "\(files.map(\.path))")
    let lora = try #require(byName["alienzkin-sdxl.safetensors"])
    #expect(lora.sha256 == nil, "a blake3 hash is not a file sha256")
    #expect(lora.urls == ["https://huggingface.co/RalFinger/alien-style-lora-sdxl/resolve/main/alienzkin-sdxl.safetensors"])
    #expect(lora.path == fx.models + "/c2add694-bf94-4dc7-bb37-6592d9c862cd/alienzkin-sdxl.safetensors", "relative path resolved against models_dir")
    let ae = try #require(byName["FLUX.1-schnell_ae.safetensors"])
    #expect(ae.sha256 == sha256Hex(fx.ae), "sha256 from source_api_response, no hashing")
    #expect(ae.urls == ["https://huggingface.co/black-forest-labs/FLUX.1-schnell/resolve/main/ae.safetensors"], "repo::file source")
    let unet = try #require(byName["diffusion_pytorch_model.fp16.safetensors#unet"])
    #expect(unet.sha256 == nil, "a folder's composite hash is never a file hash, and the Hub's sha256 is not trusted when the size differs")
    #expect(unet.urls == ["https://huggingface.co/RunDiffusion/Juggernaut-XL-v9/resolve/main/unet/diffusion_pytorch_model.fp16.safetensors"])
    #expect(!files.contains { $0.path.hasSuffix("model_index.json") }, "only weight files inside folders")
    let inplace = try #require(byName["juggernaut.safetensors"])
    #expect(inplace.sha256 == sha256Hex(fx.inplace), "a sha256: hash of a single file is used directly")
    #expect(inplace.path == fx.dir.file("elsewhere/juggernaut.safetensors"), "absolute path")
    #expect(!files.contains { $0.path.contains("EasyNegative") || $0.path.contains("external") })
}

@Test func invokeAIIsReadWhileInvokeAIWrites() throws {
    let fx = try InvokeAIFixture()
    defer { fx.dir.remove() }
    let writer = try DatabaseQueue(path: fx.db)
    try writer.inDatabase { db in
        try db.execute(sql: "BEGIN IMMEDIATE")
        try db.execute(sql: "UPDATE models SET config = json_set(config, '$.name', 'renamed') WHERE id LIKE 'c2add694%'")
        let files = try InvokeAISource(database: fx.db, modelsDirectory: fx.models).scan(fileSystem: LocalFileSystem()) { _ in }
        #expect(files.count == 6, "the reader sees the last committed state and does not wait for the writer")
        try db.execute(sql: "COMMIT")
    }
    let before = try Data(contentsOf: URL(fileURLWithPath: fx.db))
    _ = try InvokeAISource(database: fx.db, modelsDirectory: fx.models).scan(fileSystem: LocalFileSystem()) { _ in }
    #expect(try Data(contentsOf: URL(fileURLWithPath: fx.db)) == before, "never written")
}

@Test func badInvokeAIDatabasesAreWarnings() throws {
    let dir = try TempDir("badinvoke")
    defer { dir.remove() }
    var warnings: [String] = []
    #expect(try InvokeAISource(database: dir.file("none.db"), modelsDirectory: dir.path).scan(fileSystem: LocalFileSystem()) { warnings.append($0) }.isEmpty)
    #expect(warnings.last?.contains("does not exist") == true)
    let other = try DatabaseQueue(path: dir.file("other.db"))
    try other.write { db in try db.execute(sql: "CREATE TABLE model_config (id TEXT)") }
    #expect(try InvokeAISource(database: dir.file("other.db"), modelsDirectory: dir.path).scan(fileSystem: LocalFileSystem()) { warnings.append($0) }.isEmpty)
    #expect(warnings.last?.contains("no models table") == true)
    try other.write { db in try db.execute(sql: "CREATE TABLE models (id TEXT, config TEXT)") }
    #expect(try InvokeAISource(database: dir.file("other.db"), modelsDirectory: dir.path).scan(fileSystem: LocalFileSystem()) { warnings.append($0) }.isEmpty)
    #expect(warnings.last?.contains("unknown schema") == true)
    try dir.write("garbage.db", bytes(5000, 9))
    #expect(try InvokeAISource(database: dir.file("garbage.db"), modelsDirectory: dir.path).scan(fileSystem: LocalFileSystem()) { warnings.append($0) }.isEmpty)
    #expect(warnings.last?.contains("cannot read") == true)
}

@Test func hfCacheBlobsAreMatchesWithoutHashing() throws {
    let dir = try TempDir("hfcache")
    defer { dir.remove() }
    let lfs = bytes(9000, 7), small = Data("{}\n".utf8)
    let sha = sha256Hex(lfs)
    let sha1 = "0967ef424bce6791893e9a57bb952f80fd536e93"
    let repo = dir.file("models--DeepBeepMeep--Wan2.1")
    try dir.write("models--DeepBeepMeep--Wan2.1/blobs/\(sha)", lfs)
    try dir.write("models--DeepBeepMeep--Wan2.1/blobs/\(sha1)", small)
    try dir.write("models--DeepBeepMeep--Wan2.1/blobs/\(String(repeating: "e", count: 64)).1a2b3c4d.incomplete", bytes(10, 1))
    // A blob that is a symlink into the shared Xet store, and one whose target is gone.
    let xetPayload = bytes(4096, 8)
    try dir.write("blobs/ab/\(String(repeating: "a", count: 64))", xetPayload)
    try FileManager.default.createSymbolicLink(atPath: repo + "/blobs/" + sha256Hex(xetPayload), withDestinationPath: "../../blobs/ab/" + String(repeating: "a", count: 64))
    try FileManager.default.createSymbolicLink(atPath: repo + "/blobs/" + String(repeating: "d", count: 64), withDestinationPath: "../../blobs/gone")
    let commit = String(repeating: "1", count: 40)
    try FileManager.default.createDirectory(atPath: repo + "/snapshots/\(commit)/umt5-xxl", withIntermediateDirectories: true)
    try FileManager.default.createSymbolicLink(atPath: repo + "/snapshots/\(commit)/umt5-xxl/model.safetensors", withDestinationPath: "../../../blobs/\(sha)")
    try FileManager.default.createSymbolicLink(atPath: repo + "/snapshots/\(commit)/config.json", withDestinationPath: "../../blobs/\(sha1)")
    let files = HFCacheSource(root: dir.path).scan(fileSystem: LocalFileSystem()) { _ in }
    #expect(files.count == 3, "\(files.map(\.path))")
    let big = try #require(files.first { $0.sha256 == sha })
    #expect(big.urls == ["https://huggingface.co/DeepBeepMeep/Wan2.1/resolve/main/umt5-xxl/model.safetensors"])
    #expect(big.path == repo + "/blobs/" + sha)
    #expect(files.first { $0.gitSHA1 == sha1 }?.urls == ["https://huggingface.co/DeepBeepMeep/Wan2.1/resolve/main/config.json"])
    let xet = try #require(files.first { $0.sha256 == sha256Hex(xetPayload) })
    #expect(xet.path == dir.file("blobs/ab/" + String(repeating: "a", count: 64)), "links point at the resolved payload")
}

@Test func directorySourceSkipsLoopsAndDanglingLinks() throws {
    let dir = try TempDir("dirsrc")
    defer { dir.remove() }
    try dir.write("models/a.safetensors", bytes(100, 1))
    try dir.write("models/deep/er/b.bin", bytes(200, 2))
    try dir.write("models/.wgpm-partial/x.part", bytes(10, 3))
    try FileManager.default.createSymbolicLink(atPath: dir.file("models/deep/loop"), withDestinationPath: dir.file("models"))
    try FileManager.default.createSymbolicLink(atPath: dir.file("models/dangling.bin"), withDestinationPath: dir.file("nowhere"))
    try dir.write("store/c.gguf", bytes(300, 4))
    try FileManager.default.createSymbolicLink(atPath: dir.file("models/c-link.gguf"), withDestinationPath: dir.file("store/c.gguf"))
    var warnings: [String] = []
    let files = DirectorySource(root: dir.file("models")).scan(fileSystem: LocalFileSystem()) { warnings.append($0) }
    #expect(Set(files.map { ($0.path as NSString).lastPathComponent }) == ["a.safetensors", "b.bin", "c.gguf"])
    #expect(files.first { $0.path.hasSuffix("c.gguf") }?.path == dir.file("store/c.gguf"), "a file symlink is indexed at its target")
    #expect(warnings.count == 1 && warnings[0].contains("symlink loop"), "\(warnings)")
    var missing: [String] = []
    #expect(DirectorySource(root: dir.file("nope")).scan(fileSystem: LocalFileSystem()) { missing.append($0) }.isEmpty)
    #expect(missing.first == "source directory \(dir.file("nope")) does not exist; skipped (fix or remove it in the config)", "\(missing)")
}

@Test func tenThousandFilesThreeCandidatesHashesThree() throws {
    let dir = try TempDir("tenk")
    defer { dir.remove() }
    let wanted = bytes(4321, 42)
    for i in 0..<10_000 {
        let size = 100 + (i % 4000)  // never 4321
        try dir.write("store/d\(i % 50)/f\(i).bin", Data(count: size))
    }
    try dir.write("store/x/right.bin", wanted)
    try dir.write("store/y/wrong1.bin", bytes(4321, 1))
    try dir.write("store/z/wrong2.bin", bytes(4321, 2))
    let fs = CountingFileSystem()
    let state = try StateDatabase(directory: dir.file("state"))
    let index = HashIndex(sources: [DirectorySource(root: dir.file("store"))], state: state, fileSystem: fs, workers: 2)
    let files = try index.sync(warn: { _ in })
    #expect(files.count == 10_003)
    let want = DesiredFile(path: "ckpts/model.safetensors", url: "https://huggingface.co/o/r/resolve/main/model.safetensors",
                           expected: FileIdentity(size: 4321, sha256: sha256Hex(wanted)))
    let (candidates, stats) = try index.candidates(for: [want], files: files)
    #expect(fs.hashed.count == 3 && stats.filesHashed == 3 && stats.bytesHashed == 3 * 4321)
    #expect(candidates["ckpts/model.safetensors"]?.map(\.path) == [dir.file("store/x/right.bin")])
    // The plan links it by sha256.
    let plan = makePlan(desired: [want], observed: ObservedState(candidates: candidates))
    #expect(plan.actions.first?.kind == .link)
    #expect(plan.actions.first?.reason.contains("(sha256)") == true)
    // Next time nothing is hashed: the index and the hash cache remember.
    fs.hashed = []
    let again = try index.sync(warn: { _ in })
    _ = try index.candidates(for: [want], files: again)
    #expect(fs.hashed.isEmpty)
    #expect(try state.indexedFilesAll().filter { $0.sha256 != nil }.count == 3)
}

@Test func apiResponseParsingToleratesBothForms() {
    let dataclass = "RepoSibling(rfilename='ae.safetensors', size=1, blob_id='x', lfs=BlobLfsInfo(size=1, sha256='\(String(repeating: "a", count: 64))', pointer_size=135)), RepoSibling(rfilename='model_index.json', size=536, blob_id='06a8', lfs=None)"
    let dict = "{'rfilename': 'vae/x.bin', 'lfs': {'size': 3, 'sha256': '\(String(repeating: "B", count: 64))'}}"
    #expect(apiSiblings(dataclass).mapValues(\.sha256) == ["ae.safetensors": String(repeating: "a", count: 64)])
    #expect(apiSiblings(dataclass)["ae.safetensors"]?.size == 1)
    #expect(apiSiblings(dict).mapValues(\.sha256) == ["vae/x.bin": String(repeating: "b", count: 64)])
}

/// InvokeAI 4.0–5.9 had no file_size column; columns are selected by name, so it still reads.
@Test func invokeAIBeforeFileSizeColumn() throws {
    let dir = try TempDir("invoke4")
    defer { dir.remove() }
    let db = dir.file("invokeai.db")
    let queue = try DatabaseQueue(path: db)
    let content = bytes(1234, 5)
    try queue.writeWithoutTransaction { db in
        try db.execute(sql: """
            CREATE TABLE models (
                id TEXT NOT NULL PRIMARY KEY,
                hash TEXT GENERATED ALWAYS AS (json_extract(config, '$.hash')) VIRTUAL NOT NULL,
                path TEXT GENERATED ALWAYS AS (json_extract(config, '$.path')) VIRTUAL NOT NULL,
                source TEXT GENERATED ALWAYS AS (json_extract(config, '$.source')) VIRTUAL NOT NULL,
                source_type TEXT GENERATED ALWAYS AS (json_extract(config, '$.source_type')) VIRTUAL NOT NULL,
                source_api_response TEXT GENERATED ALWAYS AS (json_extract(config, '$.source_api_response')) VIRTUAL,
                config TEXT NOT NULL, created_at DATETIME, updated_at DATETIME);
            CREATE TABLE migrations (version INTEGER PRIMARY KEY);
            INSERT INTO migrations VALUES (12);
            """)
        try db.execute(sql: "INSERT INTO models (id, config) VALUES ('k1', ?)", arguments: [
            #"{"hash": "sha256:\#(sha256Hex(content))", "path": "sdxl/lora/style.safetensors", "source": "org/repo:old/sub.safetensors", "source_type": "hf_repo_id"}"#])
    }
    try dir.write("models/sdxl/lora/style.safetensors", content)
    var warnings: [String] = []
    let files = try InvokeAISource(database: db, modelsDirectory: dir.file("models")).scan(fileSystem: LocalFileSystem()) { warnings.append($0) }
    #expect(warnings.isEmpty, "\(warnings)")
    #expect(files.count == 1)
    #expect(files.first?.sha256 == sha256Hex(content))
    #expect(files.first?.urls == ["https://huggingface.co/org/repo/resolve/main/old/sub.safetensors"], "≤ 4.2.8 'repo:subfolder' form")
    var missing: [String] = []
    _ = try InvokeAISource(database: db, modelsDirectory: dir.file("nope")).scan(fileSystem: LocalFileSystem()) { missing.append($0) }
    #expect(missing.contains { $0.contains("models_dir") && $0.contains("does not exist") })
}

/// InvokeAI in rollback-journal mode holding a write lock: the reader says it waits, waits up
/// to the bound, and then fails naming the database — never "no InvokeAI files, download all".
@Test func aLockedInvokeAIDatabaseIsWaitedForThenFails() throws {
    let fx = try InvokeAIFixture()
    defer { fx.dir.remove() }
    let holder = try DatabaseLockHolder(database: fx.db)
    let notices = Lines()
    let source = InvokeAISource(database: fx.db, modelsDirectory: fx.models, lockTimeout: 2, notice: notices.append)
    let start = Date()
    var warnings: [String] = []
    #expect {
        _ = try source.scan(fileSystem: LocalFileSystem()) { warnings.append($0) }
    } throws: { error in
        "\(error)".contains("InvokeAI's database \(fx.db) is locked by another program") && "\(error)".contains("when_source_locked: skip")
    }
    let waited = Date().timeIntervalSince(start)
    #expect(waited >= 1.9 && waited < 10, "waited \(waited) s for a bound of 2 s")
    #expect(notices.all.count == 1)
    #expect(notices.all.first?.hasPrefix("waiting for InvokeAI's database \(fx.db): another program holds a lock") == true)
    #expect(warnings.isEmpty, "\(warnings)")

    // Told to skip it: a warning, no files, no error.
    var skipped: [String] = []
    let skipping = InvokeAISource(database: fx.db, modelsDirectory: fx.models, lockTimeout: 1, whenLocked: .skip)
    #expect(try skipping.scan(fileSystem: LocalFileSystem()) { skipped.append($0) }.isEmpty)
    #expect(skipped.count == 1 && skipped[0].contains("stayed locked") && skipped[0].contains("skipped"), "\(skipped)")

    // Once the lock is gone, the same source reads every row, without a wait.
    holder.release()
    #expect(try source.scan(fileSystem: LocalFileSystem()) { _ in }.count == 6)
}

/// Lines collected from another thread.
final class Lines: @unchecked Sendable {
    private let lock = NSLock()
    private var lines: [String] = []
    var all: [String] { lock.withLock { lines } }
    @Sendable func append(_ line: String) { lock.withLock { lines.append(line) } }
}

/// A source file that cannot be read when it is hashed is left out with a warning; the plan
/// goes on with the others (and downloads when none is left).
@Test func anUnreadableSourceFileIsSkippedWithAWarning() throws {
    let dir = try TempDir("unreadablesrc")
    defer { dir.remove() }
    let wanted = bytes(2048, 3)
    let locked = try dir.write("store/a-locked.bin", wanted)
    try dir.write("store/b-open.bin", wanted)
    let fs = UnreadableFileSystem(unreadable: [locked])
    let index = HashIndex(sources: [DirectorySource(root: dir.file("store"))], state: try StateDatabase(directory: dir.file("state")),
                          fileSystem: fs, workers: 2)
    let files = try index.sync(warn: { _ in })
    let want = DesiredFile(path: "ckpts/model.safetensors", url: "https://huggingface.co/o/r/resolve/main/model.safetensors",
                           expected: FileIdentity(size: 2048, sha256: sha256Hex(wanted)))
    var warnings: [String] = []
    let (candidates, stats) = try index.candidates(for: [want], files: files, warn: { warnings.append($0) })
    #expect(candidates["ckpts/model.safetensors"]?.map(\.path) == [dir.file("store/b-open.bin")])
    #expect(stats.filesHashed == 1)
    #expect(warnings == ["directory:\(dir.file("store")): cannot read \(locked): permission denied; skipped"], "\(warnings)")
    // Unverified files match by name and size only: an unreadable one is not offered either.
    let byName = DesiredFile(path: "ckpts/a-locked.bin", url: "https://example.com/a-locked.bin", expected: FileIdentity(size: 2048))
    let both = try index.candidates(for: [want, byName], files: files).0
    #expect(both["ckpts/a-locked.bin"] == nil)
}

/// A relative InvokeAI path that climbs out of models_dir is not an InvokeAI model: skipped with
/// a warning. Before: `../../../../etc/shadow` was offered and, by URL, copied into loras/.
@Test func anInvokeAIRowThatClimbsOutOfModelsDirIsSkipped() throws {
    let fx = try InvokeAIFixture()
    defer { fx.dir.remove() }
    let secret = try fx.dir.write("secret.txt", "not a model")
    let queue = try DatabaseQueue(path: fx.db)
    try queue.writeWithoutTransaction { db in
        try db.execute(sql: "UPDATE models SET config = json_set(config, '$.path', ?) WHERE id LIKE 'c2add694%'",
                       arguments: ["../secret.txt"])
    }
    var warnings: [String] = []
    let files = try InvokeAISource(database: fx.db, modelsDirectory: fx.models).scan(fileSystem: LocalFileSystem()) { warnings.append($0) }
    #expect(!files.contains { ($0.path as NSString).standardizingPath == secret }, "\(files.map(\.path))")
    #expect(warnings.contains { $0.contains("climbs out of models_dir") }, "\(warnings)")
}

/// One problem, two renderings: plan's warning and doctor's line come from the same parts,
/// so neither rewrites the other's words.
@Test func anInvokeAIProblemReadsRightInPlanAndInDoctor() throws {
    let dir = try TempDir("invokeai-problem")
    var seen: [InvokeAISource.Problem] = []
    let rows = InvokeAISource(database: dir.file("none.db"), modelsDirectory: dir.path).readRows { seen.append($0) }
    #expect(rows == nil)
    let missing = try #require(seen.first)
    #expect(missing.warning == "invokeai: database \(dir.file("none.db")) does not exist; skipped (check sources.invokeai.db)")
    #expect(missing.doctorLine == "database \(dir.file("none.db")) does not exist; fix sources.invokeai.db")

    try dir.write("other.db", "")
    let queue = try DatabaseQueue(path: dir.file("other.db"))
    try queue.write { try $0.execute(sql: "CREATE TABLE notes (id INTEGER)") }
    seen = []
    #expect(InvokeAISource(database: dir.file("other.db"), modelsDirectory: dir.path).readRows { seen.append($0) } == nil)
    #expect(seen.first?.doctorLine == "\(dir.file("other.db")) has no models table (InvokeAI 3.x or not an InvokeAI database)")
    #expect(seen.first?.warning.hasSuffix("database); skipped") == true)
}
