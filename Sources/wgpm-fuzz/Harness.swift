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
    /// A lock as `wgpm plan` uses it: loaded, then planned on a fixed scratch machine and rendered
    /// (so values the parser lets through meet the planner and the renderers).
    case lockPlan = "lock-plan"
    /// A recorded inventory as `wgpm plan --inventory FILE` uses it, the same way.
    case inventoryPlan = "inventory-plan"

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

func withTempFile<T>(_ name: String, _ data: Data, _ body: (String) throws -> T) throws -> T {
    let path = scratch + "/" + name
    guard FileManager.default.createFile(atPath: path, contents: data) else {
        throw CocoaError(.fileWriteUnknown, userInfo: [NSFilePathErrorKey: path])
    }
    return try body(path)
}

/// Runs one input through one parser and says how it ended (for the replayer; libFuzzer ignores
/// it). Errors are the expected outcome for most inputs.
@discardableResult
func run(_ format: Format, _ data: Data) -> String {
    func outcome(_ body: () throws -> String) -> String {
        do { return try body() } catch { return "rejected: " + "\(error)".prefix(160).split(separator: "\n").joined(separator: " ") }
    }
    switch format {
    case .manifest, .manifestUnchecked:
        // Manifest.load reads UTF-8 text and refuses anything else before the parser sees it.
        guard let text = String(data: data, encoding: .utf8) else { return "rejected: not UTF-8" }
        return outcome {
            let m = try Manifest.parse(text, file: "fuzz.yaml", knownModels: format == .manifest ? knownModels : nil)
            return "accepted: \(m.models.count) models, \(m.files.count) files"
        }
    case .config:
        guard let text = String(data: data, encoding: .utf8) else { return "rejected: not UTF-8" }
        // A fixed environment: no token file or HF_HOME of the machine running the fuzzer is read.
        let env = ["HOME": "/nonexistent-wgpm-fuzz", "HF_HOME": "/nonexistent-wgpm-fuzz/hf"]
        return outcome {
            let c = try MachineConfig.parse(text, file: "/fuzz/config.yaml", environment: env)
            return "accepted: \(c.sources.count) sources"
        }
    case .lock:
        return outcome {
            let lock = try withTempFile("wgpm.lock", data) { try LockFile.load($0) }
            return "accepted: \(lock?.files.count ?? 0) files"
        }
    case .savedPlan:
        return outcome { try SavedPlanAdapter.parse(data).map { "stale: " + $0 } ?? "accepted: still matches" }
    case .inventory:
        return outcome {
            let inv = try withTempFile("inventory.json", data) { try RecordedInventory.load($0) }
            return "accepted: \(inv.paths.count) paths"
        }
    case .lockPlan:
        return outcome { try FuzzMachine.planWithLock(data) }
    case .inventoryPlan:
        return outcome { try FuzzMachine.planWithInventory(data) }
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

@discardableResult
func runOne(_ data: Data, format: Format?) -> String {
    if let format { return run(format, data) }
    guard let first = data.first else { return "empty" }
    let f = Format.pick(first)
    return f.rawValue + " " + run(f, data.dropFirst())
}

#if WGPM_FUZZ
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzTestOneInput(_ bytes: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
    let data = bytes.map { Data(bytes: $0, count: count) } ?? Data()
    runOne(data, format: selected)
    return 0
}

typealias FuzzCallback = @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt

/// libFuzzer's driver (LLVM 12 and later): the argument parsing and loop of its own main.
@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(_ argc: UnsafeMutablePointer<CInt>,
                         _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
                         _ callback: FuzzCallback) -> CInt

/// SwiftPM links an executable with `main` defined as `<module>_main` (so that tests can link
/// the module), which would hide libFuzzer's main: this is that symbol, handing over to libFuzzer.
@_cdecl("wgpm_fuzz_main")
public func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    var count = argc
    var args = argv
    return LLVMFuzzerRunDriver(&count, &args, fuzzTestOneInput)
}
#else
/// `wgpm-fuzz FORMAT FILE…` (FORMAT: mixed or one of the formats): runs each file through the
/// parser and prints one line per file; exit 0 unless a file cannot be read. A crash is a bug.
@main
struct Replay {
    static func main() {
        let args = Array(CommandLine.arguments.dropFirst())
        if args == ["print-saved-plan-seed"] {
            print((try? SavedPlanAdapter.matchingSeed()) ?? "", terminator: "")
            exit(0)
        }
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
                files += entries.sorted().filter { !$0.hasPrefix(".") }.map { arg + "/" + $0 }.filter {
                    var sub: ObjCBool = false
                    return FileManager.default.fileExists(atPath: $0, isDirectory: &sub) && !sub.boolValue
                }
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
            // Named before it runs, so that a crash leaves the culprit as the last line.
            print("wgpm-fuzz: \(name) \(file): ", terminator: "")
            fflush(nil)
            let start = Date()
            let result = runOne(data, format: format)
            print(String(format: "%.3f s, %@", Date().timeIntervalSince(start), result))
            fflush(nil)
        }
        exit(failed ? 1 : 0)
    }
}
#endif
