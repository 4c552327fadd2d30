import Foundation
import Manifest
import Reconciler

/// The parsers of wgpm's input files, fed arbitrary bytes. A parser may throw; it must not crash,
/// hang or take unbounded memory. Used by `scripts/fuzz.sh` (libFuzzer, `-DWGPM_FUZZ`) and, in
/// the normal build, by `wgpm-fuzz FORMAT FILE…`, which replays inputs (the seed corpus in CI).
enum Format: String, CaseIterable {
    /// `wgpm.yaml` through `Manifest.parse`, with the model ids checked against a fixed list.
    case manifest
    /// The same text with no id check (what a lock that vouches for the text allows).
    case manifestUnchecked = "manifest-unchecked"
    /// `config.yaml` through `MachineConfig.parse`.
    case config
    /// `wgpm.lock` through `LockFile.load` (path-based: the bytes go to a temp file).
    case lock
    /// A plan saved by `wgpm plan -o`, through `SavedPlanAdapter`.
    case savedPlan = "saved-plan"
    /// `wgpm inventory --json` output through `RecordedInventory.load` (path-based as well).
    case inventory

    /// The format an input of mixed mode is for: its first byte picks one, the rest is the input.
    static func pick(_ byte: UInt8) -> Format { allCases[Int(byte) % allCases.count] }
}

/// Model ids for the manifest's id check: the fixture catalog's ids would do as well, but a fixed
/// list keeps each run independent of the working directory (did-you-mean still runs on them).
let knownModels = ["t2v", "t2v_1.3B", "i2v", "i2v_2_2", "i2v_2_2_multitalk", "ti2v_2_2", "vace_14B",
                   "vace_14B_cocktail", "vace_1.3B", "flux", "hunyuan", "ltxv_13B", "qwen_image_20B"]

/// Where path-based parsers read their input: one folder per process, made on first use.
let scratch: String = {
    let dir = NSTemporaryDirectory() + "wgpm-fuzz-\(getpid())"
    try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    atexit { try? FileManager.default.removeItem(atPath: NSTemporaryDirectory() + "wgpm-fuzz-\(getpid())") }
    return dir
}()

func withTempFile(_ name: String, _ data: Data, _ body: (String) throws -> Void) {
    let path = scratch + "/" + name
    guard FileManager.default.createFile(atPath: path, contents: data) else { return }
    try? body(path)
}

/// Runs one input through one parser. Errors are the expected outcome for most inputs.
func run(_ format: Format, _ data: Data) {
    switch format {
    case .manifest, .manifestUnchecked:
        // Manifest.load reads UTF-8 text and refuses anything else before the parser sees it.
        guard let text = String(data: data, encoding: .utf8) else { return }
        _ = try? Manifest.parse(text, file: "fuzz.yaml", knownModels: format == .manifest ? knownModels : nil)
    case .config:
        guard let text = String(data: data, encoding: .utf8) else { return }
        // A fixed environment: no token file or HF_HOME of the machine running the fuzzer is read.
        let env = ["HOME": "/nonexistent-wgpm-fuzz", "HF_HOME": "/nonexistent-wgpm-fuzz/hf"]
        _ = try? MachineConfig.parse(text, file: "/fuzz/config.yaml", environment: env)
    case .lock:
        withTempFile("wgpm.lock", data) { _ = try LockFile.load($0) }
    case .savedPlan:
        SavedPlanAdapter.run(data)
    case .inventory:
        withTempFile("inventory.json", data) { _ = try RecordedInventory.load($0) }
    }
}

/// The format named by $WGPM_FUZZ_FORMAT; unset or `mixed`: the first byte of each input picks it.
let selected: Format? = {
    let name = ProcessInfo.processInfo.environment["WGPM_FUZZ_FORMAT"] ?? "mixed"
    if name == "mixed" { return nil }
    guard let f = Format(rawValue: name) else {
        FileHandle.standardError.write(Data("wgpm-fuzz: unknown WGPM_FUZZ_FORMAT '\(name)'; one of: mixed, \(Format.allCases.map(\.rawValue).joined(separator: ", "))\n".utf8))
        exit(64)
    }
    return f
}()

func runOne(_ data: Data, format: Format?) {
    if let format { return run(format, data) }
    guard let first = data.first else { return }
    run(Format.pick(first), data.dropFirst())
}

#if WGPM_FUZZ
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzTestOneInput(_ bytes: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
    let data = bytes.map { Data(bytes: $0, count: count) } ?? Data()
    runOne(data, format: selected)
    return 0
}
#else
/// `wgpm-fuzz FORMAT FILE…` (FORMAT: mixed or one of the formats): runs each file through the
/// parser and prints one line per file; exit 0 unless a file cannot be read. A crash is a bug.
@main
struct Replay {
    static func main() {
        let args = Array(CommandLine.arguments.dropFirst())
        let names = ["mixed"] + Format.allCases.map(\.rawValue)
        guard let name = args.first, names.contains(name), args.count >= 2 else {
            print("usage: wgpm-fuzz FORMAT FILE|DIR…   FORMAT: \(names.joined(separator: " | "))")
            exit(64)
        }
        let format = Format(rawValue: name)
        var files: [String] = []
        for arg in args.dropFirst() {
            var isDir: ObjCBool = false
            if FileManager.default.fileExists(atPath: arg, isDirectory: &isDir), isDir.boolValue {
                let entries = (try? FileManager.default.contentsOfDirectory(atPath: arg)) ?? []
                files += entries.sorted().filter { !$0.hasPrefix(".") }.map { arg + "/" + $0 }
            } else {
                files.append(arg)
            }
        }
        var failed = false
        for file in files {
            guard let data = FileManager.default.contents(atPath: file) else {
                print("wgpm-fuzz: cannot read \(file)")
                failed = true
                continue
            }
            let start = Date()
            runOne(data, format: format)
            print(String(format: "wgpm-fuzz: %@ %@: ok (%.3f s)", name, file, Date().timeIntervalSince(start)))
        }
        exit(failed ? 1 : 0)
    }
}
#endif
