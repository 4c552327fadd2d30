import Catalog
import Foundation
import Testing
@testable import Manifest

let known = ["t2v", "i2v_2_2", "vace_14B", "t2v_1.3B", "flux"]

struct BadManifest: CustomTestStringConvertible, Sendable {
    var name: String
    var yaml: String
    /// Each expected problem: "line:column: fragment of the message".
    var problems: [String]
    var testDescription: String { name }
}

let badManifests: [BadManifest] = [
    BadManifest(name: "syntax error", yaml: "version: 1\nmodels: [t2v\n", problems: ["3:1: YAML syntax error"]),
    BadManifest(name: "empty", yaml: "", problems: ["1:1: the manifest is empty"]),
    BadManifest(name: "missing version", yaml: "models:\n  - t2v\n", problems: ["1:1: missing 'version: 1'"]),
    BadManifest(name: "wrong version", yaml: "version: 2\nmodels: [t2v]\n", problems: ["1:10: version must be 1"]),
    BadManifest(name: "unknown top key with suggestion", yaml: "version: 1\nmodel:\n  - t2v\n",
                problems: ["2:1: unknown key 'model' in the manifest; did you mean models?"]),
    BadManifest(name: "unknown model id with suggestion", yaml: "version: 1\nmodels:\n  - i2v_22\n",
                problems: ["3:5: unknown model id 'i2v_22'; did you mean i2v_2_2?"]),
    BadManifest(name: "bad setting value", yaml: "version: 1\nsettings:\n  dtype: fp32\nmodels: [t2v]\n",
                problems: ["3:10: settings.dtype (or auto) is 'fp32'; it must be one of bf16, fp16"]),
    BadManifest(name: "unknown setting key", yaml: "version: 1\nsettings:\n  transformer_quantisation: int8\nmodels: [t2v]\n",
                problems: ["3:3: unknown key 'transformer_quantisation' in settings; did you mean transformer_quantization?"]),
    BadManifest(name: "model entry without id", yaml: "version: 1\nmodels:\n  - dtype: fp16\n",
                problems: ["3:5: a model entry needs 'id:'"]),
    BadManifest(name: "duplicate model", yaml: "version: 1\nmodels:\n  - t2v\n  - id: t2v\n",
                problems: ["4:9: model 't2v' is listed twice"]),
    BadManifest(name: "bad variants", yaml: "version: 1\nmodels:\n  - id: t2v\n    variants: some\n",
                problems: ["4:15: variants must be 'all' or 'default'"]),
    BadManifest(name: "path escapes", yaml: "version: 1\nfiles:\n  - url: https://huggingface.co/a/b/resolve/main/x.bin\n    path: ckpts/../../etc/x\n",
                problems: ["4:11: path 'ckpts/../../etc/x' climbs out of its folder"]),
    BadManifest(name: "path with an empty segment", yaml: "version: 1\nfiles:\n  - url: https://huggingface.co/a/b/resolve/main/x.bin\n    path: loras/wan//x.bin\n",
                problems: ["4:11: path 'loras/wan//x.bin' has an empty segment"]),
    BadManifest(name: "path with a NUL", yaml: "version: 1\nfiles:\n  - url: https://huggingface.co/a/b/resolve/main/x.bin\n    path: \"ckpts/x\\0.bin\"\n",
                problems: ["4:11: path 'ckpts/x?.bin' contains a control character"]),
    BadManifest(name: "path naming wgpm's working files", yaml: "version: 1\nfiles:\n  - url: https://huggingface.co/a/b/resolve/main/x.bin\n    path: ckpts/.wgpm-partial/x.bin\n",
                problems: ["4:11: path 'ckpts/.wgpm-partial/x.bin' names wgpm's own working files"]),
    BadManifest(name: "absolute path", yaml: "version: 1\nfiles:\n  - url: https://huggingface.co/a/b/resolve/main/x.bin\n    path: /etc/passwd\n",
                problems: ["4:11: path '/etc/passwd' must be relative"]),
    BadManifest(name: "path outside managed folders", yaml: "version: 1\nfiles:\n  - url: https://huggingface.co/a/b/resolve/main/x.bin\n    path: wgp.py\n",
                problems: ["4:11: path 'wgp.py' must be below ckpts/ or loras/"]),
    BadManifest(name: "bad sha256 and url", yaml: "version: 1\nfiles:\n  - url: ftp://x/y\n    path: loras/wan/y.safetensors\n    sha256: abc\n",
                problems: ["3:10: url must start with https://", "5:13: sha256 must be 64 hexadecimal characters"]),
    BadManifest(name: "all problems at once", yaml: "version: 3\nsettings:\n  dtype: fp32\nmodels:\n  - t2vv\n  - fluxx\nextra: 1\n",
                problems: ["1:10: version must be 1", "3:10: settings.dtype", "5:5: unknown model id 't2vv'; did you mean t2v?",
                           "6:5: unknown model id 'fluxx'; did you mean flux?", "7:1: unknown key 'extra'"]),
]

@Test(arguments: badManifests)
func manifestErrors(_ bad: BadManifest) {
    do {
        _ = try Manifest.parse(bad.yaml, file: "wgpm.yaml", knownModels: known)
        Issue.record("accepted a bad manifest")
    } catch ManifestError.invalid(let problems) {
        let lines = problems.sorted().map { "\($0.line):\($0.column): \($0.message)" }
        #expect(problems.count == bad.problems.count, "\(lines)")
        for expected in bad.problems {
            #expect(lines.contains { $0.hasPrefix(expected) }, "missing \(expected) in \(lines)")
        }
        #expect(problems.allSatisfy { $0.file == "wgpm.yaml" })
    } catch {
        Issue.record("unexpected error \(error)")
    }
}

@Test func goodManifestWithOverrides() throws {
    let yaml = """
    version: 1
    settings:
      transformer_quantization: int8
      dtype: fp16
    models:
      - t2v
      - id: i2v_2_2
        transformer_quantization: bf16
      - id: vace_14B
        variants: all
    files:
      - url: https://huggingface.co/ORG/REPO/resolve/main/sub/file.safetensors
        path: loras/wan/file.safetensors
        sha256: 0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef
    """
    let m = try Manifest.parse(yaml, file: "m.yaml", knownModels: known)
    #expect(m.models.map(\.id) == ["t2v", "i2v_2_2", "vace_14B"])
    #expect(m.models[0].settings.dtype == .fp16)
    #expect(m.models[1].settings.transformerQuantization == .bf16)
    #expect(m.models[1].settings.dtype == .fp16)
    #expect(m.models[2].settings.allVariants)
    #expect(m.files == [ManifestFile(url: "https://huggingface.co/ORG/REPO/resolve/main/sub/file.safetensors",
                                     path: "loras/wan/file.safetensors",
                                     sha256: "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", line: 12)])
}

@Test func configDefaultsTokenAndEndpoint() throws {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("wgpm-cfg-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: dir + "/wan/defaults", withIntermediateDirectories: true)
    try FileManager.default.createDirectory(atPath: dir + "/hf", withIntermediateDirectories: true)
    try "  hf_filetoken\n".write(toFile: dir + "/hf/token", atomically: true, encoding: .utf8)
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let text = """
    wan2gp_directory: wan
    state_directory: ~/state
    hub:
      endpoint: https://example.org/
    invokeai_db: /srv/invoke/databases/invokeai.db
    sources:
      - hf_cache: ~/.cache/huggingface/hub
      - directory: /mnt/models
    """
    let env = ["HOME": "/home/u", "HF_HOME": dir + "/hf"]
    let cfg = try MachineConfig.parse(text, file: dir + "/config.yaml", environment: env)
    #expect(cfg.wan2gpDirectory == dir + "/wan")
    #expect(cfg.ckptsDirectory == dir + "/wan/ckpts")
    #expect(cfg.stateDirectory == "/home/u/state")
    #expect(cfg.hubEndpoint == "https://example.org")
    #expect(cfg.token == "hf_filetoken")
    #expect(cfg.sources == [.invokeai(db: "/srv/invoke/databases/invokeai.db", modelsDir: "/srv/invoke/models"),
                            .hfCache("/home/u/.cache/huggingface/hub"), .directory("/mnt/models")])
    let overridden = try MachineConfig.parse(text, file: dir + "/config.yaml",
                                             environment: env.merging(["HF_ENDPOINT": "http://127.0.0.1:9/", "HF_TOKEN": "hf_env"]) { $1 })
    #expect(overridden.hubEndpoint == "http://127.0.0.1:9")
    #expect(overridden.token == "hf_env")
}

@Test func configErrors() throws {
    #expect(throws: ConfigError.self) {
        try MachineConfig.parse("wan2gp_directory: /nonexistent/wan2gp\n", file: "/tmp/c.yaml", environment: [:])
    }
    do {
        _ = try MachineConfig.parse("wan2gp_dir: /x\nlink_mode: soft\n", file: "/tmp/c.yaml", environment: [:])
        Issue.record("accepted a bad config")
    } catch ConfigError.invalid(let problems) {
        let text = problems.map(\.description).joined(separator: "\n")
        #expect(text.contains("unknown key 'wan2gp_dir'") && text.contains("did you mean wan2gp_directory?"))
        #expect(text.contains("link_mode is 'soft'"))
        #expect(text.contains("wan2gp_directory is required"))
    }
    #expect(throws: ConfigError.self) {
        try MachineConfig.load(explicit: nil, environment: ["HOME": "/nonexistent"], cwd: "/nonexistent")
    }
}

/// The example manifests of manifests/ are valid against the real catalog and expand cleanly.
@Test func exampleManifestsAreValid() throws {
    let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    let catalog = try Catalog.load(wan2gpDirectory: root.appendingPathComponent("fixtures/wan2gp").path)
    let dir = root.appendingPathComponent("manifests").path
    let names = try FileManager.default.contentsOfDirectory(atPath: dir).filter { $0.hasSuffix(".yaml") }.sorted()
    #expect(names.count >= 3)
    for name in names {
        let manifest = try Manifest.load(path: dir + "/" + name, knownModels: catalog.ids)
        let files = try catalog.expand(manifest.models.map { ($0.id, $0.settings) })
        #expect(files.count > 20, "\(name)")
    }
}

@Test func dtypeAutoIsWan2GPsDefault() throws {
    for value in ["auto", "\"\"", "AUTO"] {
        let m = try Manifest.parse("version: 1\nsettings:\n  dtype: fp16\nmodels:\n  - id: t2v\n    dtype: \(value)\n", file: "m.yaml", knownModels: known)
        #expect(m.models[0].settings.dtype == .bf16, "dtype: \(value)")
    }
}

@Test func wan2gpsOwnConfigPlacesCkptsAndLoras() throws {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("wgpm-wgpcfg-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: dir + "/wan/defaults", withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let wgp = dir + "/wan/wgp_config.json"
    try #"{"checkpoints_paths": ["", "models/ckpts", "/mnt/more"], "loras_root": "/srv/loras", "transformer_dtype_policy": ""}"#
        .write(toFile: wgp, atomically: true, encoding: .utf8)
    let env = ["HOME": "/home/u"]
    let cfg = try MachineConfig.parse("wan2gp_directory: wan\n", file: dir + "/config.yaml", environment: env)
    // The first non-blank checkpoints path is where Wan2GP downloads, relative to the app root.
    #expect(cfg.ckptsDirectory == dir + "/wan/models/ckpts")
    #expect(cfg.lorasDirectory == "/srv/loras")
    #expect(cfg.folderOrigins["ckpts"]?.contains("checkpoints_paths") == true)
    // wgpm's own keys win over Wan2GP's.
    let own = try MachineConfig.parse("wan2gp_directory: wan\nckpts_directory: /data/ckpts\n", file: dir + "/config.yaml", environment: env)
    #expect(own.ckptsDirectory == "/data/ckpts")
    #expect(own.lorasDirectory == "/srv/loras")
    // A hostile or broken file is ignored with a reason, never followed into a system folder.
    for bad in [#"{"checkpoints_paths": ["/etc"], "loras_root": "/"}"#, "[1, 2]", "{\"checkpoints_paths\": 7}"] {
        try bad.write(toFile: wgp, atomically: true, encoding: .utf8)
        let c = try MachineConfig.parse("wan2gp_directory: wan\n", file: dir + "/config.yaml", environment: env)
        #expect(c.ckptsDirectory == dir + "/wan/ckpts", "\(bad)")
        #expect(c.lorasDirectory == dir + "/wan/loras", "\(bad)")
    }
    try FileManager.default.removeItem(atPath: wgp)
    try FileManager.default.createSymbolicLink(atPath: wgp, withDestinationPath: "/etc/passwd")
    #expect(Wan2GPServerConfig.read(wan2gpDirectory: dir + "/wan").problem != nil)
}

/// InvokeAI's models folder is beside its databases folder; a database at the top of the tree
/// gives "/models", not "//models" (issue 12's doctor line).
@Test func invokeAIModelsFolderIsBesideItsDatabasesFolder() {
    #expect(invokeAIModelsDirectory(forDatabase: "/srv/invokeai/databases/invokeai.db") == "/srv/invokeai/models")
    #expect(invokeAIModelsDirectory(forDatabase: "/nonexistent/invokeai.db") == "/models")
}
