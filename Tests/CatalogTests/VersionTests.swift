import Crypto
import Foundation
import Testing
@testable import Catalog

/// A scratch folder per test, removed by the caller's `defer`.
func scratch(_ name: String = #function) throws -> String {
    let dir = NSTemporaryDirectory() + "wgpm-version-\(name.filter(\.isLetter))-\(UUID().uuidString.prefix(8))"
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    return dir
}

func write(_ text: String, _ path: String) throws {
    try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
    try text.write(toFile: path, atomically: false, encoding: .utf8)
}

/// A Wan2GP-shaped folder: the fixture's definitions and a little code.
func checkout(code: [String: String]) throws -> String {
    let dir = try scratch("checkout")
    try FileManager.default.copyItem(atPath: wan2gpFixture + "/defaults", toPath: dir + "/defaults")
    for (path, text) in code { try write(text, dir + "/" + path) }
    return dir
}

let aCommit = "0123456789abcdef0123456789abcdef01234567"

@Test func commitIsReadFromLooseRefsPackedRefsDetachedHeadsAndWorktrees() throws {
    let dir = try scratch()
    defer { try? FileManager.default.removeItem(atPath: dir) }
    #expect(CheckoutVersion.gitCommit(dir) == nil)
    try write("ref: refs/heads/main\n", dir + "/.git/HEAD")
    #expect(CheckoutVersion.gitCommit(dir) == nil)  // an unborn branch
    try write("# pack-refs with: peeled fully-peeled sorted\n\(aCommit) refs/heads/main\n", dir + "/.git/packed-refs")
    #expect(CheckoutVersion.gitCommit(dir) == aCommit)
    let loose = String(aCommit.reversed())
    try write(loose + "\n", dir + "/.git/refs/heads/main")
    #expect(CheckoutVersion.gitCommit(dir) == loose)  // a loose ref is newer than the packed one
    try write(aCommit.uppercased() + "\n", dir + "/.git/HEAD")
    #expect(CheckoutVersion.gitCommit(dir) == aCommit)
    // A linked worktree: `.git` is a file naming its git dir, whose commondir holds the refs.
    let wt = try scratch("worktree")
    defer { try? FileManager.default.removeItem(atPath: wt) }
    try write("ref: refs/heads/main\n", dir + "/.git/worktrees/w/HEAD")
    try write("../..\n", dir + "/.git/worktrees/w/commondir")
    try write("gitdir: \(dir)/.git/worktrees/w\n", wt + "/.git")
    #expect(CheckoutVersion.gitCommit(wt) == loose)
    // A ref that climbs out of the git dir is not followed.
    try write("ref: refs/../../../etc/passwd\n", dir + "/.git/HEAD")
    #expect(CheckoutVersion.gitCommit(dir) == nil)
}

@Test func wangpVersionIsReadAndHostileValuesAreIgnored() throws {
    let dir = try scratch()
    defer { try? FileManager.default.removeItem(atPath: dir) }
    try write("import os\nWanGP_version = \"12.3456\"\ntarget_mmgp_version = \"3.7.10\"\n", dir + "/wgp.py")
    #expect(CheckoutVersion.wangpVersion(dir) == "12.3456")
    try write("WanGP_version = '9.72'\n", dir + "/wgp.py")
    #expect(CheckoutVersion.wangpVersion(dir) == "9.72")
    try write("WanGP_version = \"1\\u{1b}[2J\"\nWanGP_version = x\n", dir + "/wgp.py")
    #expect(CheckoutVersion.wangpVersion(dir) == nil)
}

@Test func fingerprintCoversTheDownloadCodeOnlyAndFollowsNoSymlinks() throws {
    let code = ["wgp.py": "WanGP_version = \"1.0\"\n", "models/wan/wan_handler.py": "x = 1\n",
                "shared/utils/download.py": "def f(): pass\n", "models/wan/modules/model.py": "ignored\n"]
    let dir = try checkout(code: code)
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let v = CheckoutVersion.read(dir)
    #expect(v.fingerprintFiles == 3)
    // The definition, computed independently: sorted paths, "<path>\0<hex sha256>\n".
    var lines = ""
    for path in ["models/wan/wan_handler.py", "shared/utils/download.py", "wgp.py"] {
        lines += path + "\0" + SHA256.hash(data: Data(code[path]!.utf8)).map { String(format: "%02x", $0) }.joined() + "\n"
    }
    #expect(v.fingerprint == SHA256.hash(data: Data(lines.utf8)).map { String(format: "%02x", $0) }.joined())
    #expect(v.wangpVersion == "1.0")

    // Code outside the fingerprint's files does not change it; a handler edit does.
    try write("changed\n", dir + "/models/wan/modules/model.py")
    #expect(CheckoutVersion.read(dir).fingerprint == v.fingerprint)
    try write("x = 2\n", dir + "/models/wan/wan_handler.py")
    #expect(CheckoutVersion.read(dir).fingerprint != v.fingerprint)
    // A symlink (to a file or a folder) is not read: another program's folder cannot make wgpm read /etc.
    try FileManager.default.createSymbolicLink(atPath: dir + "/models/evil_handler.py", withDestinationPath: "/etc/passwd")
    try FileManager.default.createSymbolicLink(atPath: dir + "/shared/utils/etc", withDestinationPath: "/etc")
    #expect(CheckoutVersion.read(dir).fingerprintFiles == 3)
}

@Test func definitionsWithoutCodeAreNamedByTheirDefinitions() throws {
    let c = try Catalog.load(wan2gpDirectory: wan2gpFixture, tracedDirectory: nil)
    #expect(c.selection?.kind == .definitions)
    #expect(c.selection?.knowledge == "8681e9f7")
    #expect(c.selection?.warning == nil)
    // One edited definition: no longer a known set, so wgpm says it may be wrong.
    let dir = try checkout(code: [:])
    defer { try? FileManager.default.removeItem(atPath: dir) }
    try write("{\"model\": {\"name\": \"x\", \"architecture\": \"t2v\", \"URLs\": []}}", dir + "/defaults/zz_mine.json")
    let edited = try Catalog.load(wan2gpDirectory: dir, tracedDirectory: nil)
    #expect(edited.selection?.kind == .fallback)
    #expect(edited.selection?.warning?.contains("no wgp.py") == true)
}

@Test func anUnknownCheckoutFallsBackToTheNearestVersionAndSaysToTrace() throws {
    let dir = try checkout(code: ["wgp.py": "WanGP_version = \"12.61\"\n", "models/wan/wan_handler.py": "pass\n"])
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let c = try Catalog.load(wan2gpDirectory: dir, tracedDirectory: dir + "/no-such-state")
    let s = try #require(c.selection)
    #expect(s.kind == .fallback)
    #expect(s.knowledge == "8681e9f7")
    let warning = try #require(s.warning)
    #expect(warning.contains("12.61"))
    #expect(warning.contains("wgpm trace"))
    #expect(warning.contains("8681e9f7"))
}

@Test func aKnownCommitWithEditedCodeSaysSo() throws {
    let dir = try checkout(code: ["wgp.py": "WanGP_version = \"12.60\"\n# my edit\n"])
    defer { try? FileManager.default.removeItem(atPath: dir) }
    try write("8681e9f777f9f847f74a0bdefd13d5b9a6efe12d\n", dir + "/.git/HEAD")
    let s = try #require(try Catalog.load(wan2gpDirectory: dir, tracedDirectory: nil).selection)
    #expect(s.kind == .edited)
    #expect(s.warning?.contains("locally edited") == true)
}

@Test func tracedKnowledgeInTheStateDirectoryWinsAndIsChecked() throws {
    let dir = try checkout(code: ["wgp.py": "WanGP_version = \"13.0\"\n"])
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let version = CheckoutVersion.read(dir)
    var k = TracedKnowledge(format_version: 1, wan2gp_commit: nil, wangp_version: "13.0", commit_date: nil,
                            fingerprint: version.fingerprint, variant_rule: "8681e9f7",
                            core: [.init(path: "ckpts/new/core.bin", url: "https://huggingface.co/a/b/resolve/main/core.bin", settings: nil)],
                            architectures: ["t2v": .init(lora_dir: "loras/wan_new", dtype: nil, support: [])], models: [:])
    let state = dir + "/state"
    try FileManager.default.createDirectory(atPath: state, withIntermediateDirectories: true)
    try k.encoded().write(to: URL(fileURLWithPath: state + "/\(version.fingerprint).json"))
    let c = try Catalog.load(wan2gpDirectory: dir, tracedDirectory: state)
    #expect(c.selection?.kind == .traced)
    #expect(c.selection?.warning == nil)
    let files = try c.expand("t2v", settings: ModelSettings())
    #expect(files.contains { $0.path == "ckpts/new/core.bin" && $0.role == .core })
    #expect(c.support.loraDirectory(of: "t2v", model: "t2v") == "loras/wan_new")

    // Knowledge that names a path outside ckpts/ and loras/ is refused, not followed.
    for bad in ["ckpts/../../etc/cron.d/x", "/etc/passwd", "loras_evil/x.safetensors", "loras_i2v/../x"] {
        k.core = [.init(path: bad, url: "https://huggingface.co/a/b/resolve/main/x", settings: nil)]
        try k.encoded().write(to: URL(fileURLWithPath: state + "/\(version.fingerprint).json"))
        #expect(throws: CatalogError.self) { try Catalog.load(wan2gpDirectory: dir, tracedDirectory: state) }
    }
    k.core = [.init(path: "ckpts/x", url: "http://evil.example/x", settings: nil)]
    try k.encoded().write(to: URL(fileURLWithPath: state + "/\(version.fingerprint).json"))
    #expect(throws: CatalogError.self) { try Catalog.load(wan2gpDirectory: dir, tracedDirectory: state) }
    // Knowledge stored under this fingerprint but made for another is refused.
    k.core = []
    k.fingerprint = String(repeating: "0", count: 64)
    try k.encoded().write(to: URL(fileURLWithPath: state + "/\(version.fingerprint).json"))
    #expect(throws: CatalogError.self) { try Catalog.load(wan2gpDirectory: dir, tracedDirectory: state) }
}

/// What wgpm's own catalog downloads for each model under each setting, written as a trace.
func selfTrace(_ catalog: Catalog, fingerprint: String) throws -> WanTrace {
    var models: [String: WanTrace.Model] = [:]
    for id in catalog.ids {
        var files: [String: (String, Set<Int>)] = [:]
        for index in 0..<12 {
            for f in try catalog.expand(id, settings: ModelSettings(traceIndex: index)) where f.downloadable {
                files[f.path, default: (f.url, [])].1.insert(index)
            }
        }
        let arch = catalog.models[id]!.architecture
        models[id] = .init(architecture: arch, lora_dir: catalog.support.loraDirectory(of: arch, model: id),
                           files: files.mapValues { .init(url: $0.0, settings: $0.1.count == 12 ? nil : $0.1.sorted()) })
    }
    return WanTrace(format_version: 1, wan2gp_commit: nil, wangp_version: "12.60", fingerprint: fingerprint, mmgp: nil,
                    settings: ModelSettings.traceOrder, models: models, errors: nil)
}

@Test func knowledgeDerivedFromATraceReproducesItInEveryCell() throws {
    let trace = try selfTrace(catalog, fingerprint: String(repeating: "a", count: 64))
    let (knowledge, mismatches) = try KnowledgeDerivation.derive(trace: trace, wan2gpDirectory: wan2gpFixture)
    #expect(mismatches.isEmpty, "\(mismatches.prefix(3))")
    // Derived knowledge is explicit lists: the core set is what every model downloads beyond
    // its definition (a model whose definition names det_align/detface.pt keeps it out).
    let core = Set(knowledge.core.map(\.path))
    #expect(core.isSubset(of: Set(always24.map { "ckpts/" + $0 })) && core.count >= 23, "\(core.sorted())")
    // And it round-trips through its file format.
    let decoded = try TracedKnowledge.decode(try knowledge.encoded(), file: "k.json")
    let again = try Catalog.load(wan2gpDirectory: wan2gpFixture, support: SupportFiles(traced: decoded))
    #expect(try KnowledgeDerivation.compare(again, with: trace).isEmpty)
}

@Test func compareFindsAFileTheTraceDoesNotHave() throws {
    var trace = try selfTrace(catalog, fingerprint: String(repeating: "b", count: 64))
    trace.models["t2v"]!.files["ckpts/Wan2.1_VAE.safetensors"] = nil
    trace.models["t2v"]!.files["ckpts/extra/only-in-trace.bin"] = .init(url: "https://huggingface.co/x/y/resolve/main/e.bin", settings: [3])
    let m = try KnowledgeDerivation.compare(catalog, with: trace, models: ["t2v"])
    #expect(m.count == 12)
    #expect(m.allSatisfy { $0.extra == ["ckpts/Wan2.1_VAE.safetensors"] })
    #expect(m.filter { $0.missing == ["ckpts/extra/only-in-trace.bin"] }.map(\.setting) == [ModelSettings.traceOrder[3]])
}

@Test func traceSettingsIndexRoundTrips() {
    for i in 0..<12 { #expect(ModelSettings(traceIndex: i).traceIndex == i) }
    #expect(ModelSettings.traceOrder.first == "int8-int8-bf16")
    #expect(ModelSettings.traceOrder[4] == "fp8-int8-bf16")
    #expect(ModelSettings.traceOrder.last == "bf16-bf16-fp16")
}

@Test func olderVariantRulesDoNotFallBackAcrossQuantizations() {
    let list = ["https://h/x/resolve/main/m_bf16.safetensors", "https://h/x/resolve/main/m_quanto_bf16_INT8.safetensors",
                "https://h/x/resolve/main/m_quanto_fp16_int8.safetensors"]
    // Asked for fp8, there is none: today's rule takes int8 (bf16 first), older rules the first file.
    #expect(pick(list, quantization: "fp8", dtype: .bf16, rule: .r8681e9f7) == list[1])
    #expect(pick(list, quantization: "fp8", dtype: .bf16, rule: .r3749d23d) == list[0])
    #expect(pick(list, quantization: "fp8", dtype: .bf16, rule: .r221f5eb9) == list[0])
    // int8 with fp16: every rule takes the fp16 int8 file.
    for rule in VariantRule.allCases { #expect(pick(list, quantization: "int8", dtype: .fp16, rule: rule) == list[2]) }
    // bf16 asked: older rules skip quanto files and prefer the dtype; today's takes the first.
    let quantoFirst = [list[1], list[0]]
    #expect(pick(quantoFirst, quantization: "bf16", dtype: .bf16, rule: .r3749d23d) == list[0])
    #expect(pick(quantoFirst, quantization: "bf16", dtype: .bf16, rule: .r8681e9f7) == list[1])
    // Case: "Int8" is int8 only to the rules that lowercase.
    let mixed = ["https://h/x/resolve/main/a_bf16.safetensors", "https://h/x/resolve/main/a_Int8.safetensors"]
    #expect(pick(mixed, quantization: "int8", dtype: .bf16, rule: .r3749d23d) == mixed[0])
    #expect(pick(mixed, quantization: "int8", dtype: .bf16, rule: .r221f5eb9) == mixed[1])
    // 697f8fe8 (LTX-2, January 2026): int8 falls back to fp8 in list order, fp8 takes the first.
    let ltx = ["https://h/x/resolve/main/l_bf16.safetensors", "https://h/x/resolve/main/l_fp8_bf16.safetensors",
               "https://h/x/resolve/main/l_int8_bf16.safetensors"]
    #expect(pick(ltx, quantization: "int8", dtype: .bf16, rule: .r697f8fe8) == ltx[1])
    #expect(pick(ltx, quantization: "int8", dtype: .bf16, rule: .r8681e9f7) == ltx[2])
    #expect(pick(ltx, quantization: "fp8", dtype: .bf16, rule: .r697f8fe8) == ltx[0])
    #expect(pick(ltx, quantization: "fp8", dtype: .bf16, rule: .r8681e9f7) == ltx[1])
}

/// A version whose LoRA folders sit at the app root says which (doctor shows them).
@Test func rootLevelLoraFoldersOfAVersionAreListed() throws {
    let k = TracedKnowledge(format_version: 1, wan2gp_commit: "d1ecd5fd", wangp_version: "9.3", commit_date: nil,
                            fingerprint: String(repeating: "a", count: 64), variant_rule: "3749d23d", core: [],
                            architectures: ["i2v": .init(lora_dir: "loras_i2v", dtype: nil, support: []),
                                            "t2v": .init(lora_dir: "loras", dtype: nil, support: []),
                                            "flux": .init(lora_dir: "loras_flux", dtype: nil, support: [])],
                            models: ["i2v_fusionix": .init(lora_dir: "loras_i2v", support: nil)])
    #expect(try SupportFiles(traced: k).legacyLoraFolders == ["loras_flux", "loras_i2v"])
    var today = k
    today.architectures = ["t2v": .init(lora_dir: "loras/wan", dtype: nil, support: [])]
    today.models = [:]
    #expect(try SupportFiles(traced: today).legacyLoraFolders.isEmpty)
}
