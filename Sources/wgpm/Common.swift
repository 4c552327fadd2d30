import ArgumentParser
import Foundation
import Catalog
import Planner
import Executor
import Inventory
import Manifest
import Reconciler
import Rendering

/// Options every command that reads the machine config shares.
struct ConfigOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("Config file (default: $WGPM_CONFIG, ./config.yaml, ~/.config/wgpm/config.yaml).", valueName: "file"),
            completion: .file(extensions: ["yaml", "yml"]))
    var config: String?

    /// The machine config; with `allowMissing`, the fallback settings when no file exists.
    /// `saved` is the config a saved plan was made with: used unless --config names another.
    func load(allowMissing: Bool = false, saved: String? = nil) throws -> MachineConfig {
        let env = ProcessInfo.processInfo.environment
        let cwd = FileManager.default.currentDirectoryPath
        do {
            return try MachineConfig.load(explicit: config ?? saved, environment: env, cwd: cwd)
        } catch ConfigError.notFound where allowMissing {
            return try MachineConfig.fallback(environment: env, cwd: cwd)
        }
    }

    func reconciler(allowMissingConfig: Bool = false, savedConfig: String? = nil) throws -> Reconciler {
        let config = try load(allowMissing: allowMissingConfig, saved: savedConfig)
        var context = Context(notice: { line in printError("wgpm: \(line)") })
        context.heldInPartial = heldInPartial(config, fileSystem: context.fileSystem)
        return try Reconciler(config: config, context: context)
    }
}

/// Model ids of the configured Wan2GP's catalog that start with `prefix`, for shell completion;
/// none when there is no config or catalog (completion must never print an error).
func modelIDCompletions(_ prefix: String) -> [String] {
    let env = ProcessInfo.processInfo.environment
    guard let config = try? MachineConfig.load(explicit: nil, environment: env, cwd: FileManager.default.currentDirectoryPath),
          let catalog = try? Catalog.load(wan2gpDirectory: config.wan2gpDirectory) else { return [] }
    return catalog.ids.filter { $0.hasPrefix(prefix) }.sorted()
}

/// What a desired file's partial download holds, where apply keeps it for this config.
func heldInPartial(_ config: MachineConfig, fileSystem: FileSystem) -> @Sendable (DesiredFile) -> Int64 {
    let mapper = PathMapper(ckpts: config.ckptsDirectory, loras: config.lorasDirectory)
    let confinement = Confinement(mapper: mapper, linkedFolders: config.linkedFolders)
    return { file in partialBytes(of: JobSpec.download(of: file, mapper: mapper), fileSystem: fileSystem, confinement: confinement) }
}

/// What plan and apply read: the catalog (when a Wan2GP directory is configured), the manifest,
/// and the lock next to it.
struct Inputs {
    var catalog: Catalog?
    var manifest: Manifest
    var lock: LockFile?
    var lockPath: String

    init(reconciler: Reconciler, manifestPath: String) throws {
        lockPath = LockFile.path(forManifest: manifestPath)
        lock = try LockFile.load(lockPath)
        // Read once: the text the lock vouches for is the text that is parsed.
        let text = try? String(contentsOfFile: manifestPath, encoding: .utf8)
        let lockVouches = lock != nil && text.map { LockFile.digest($0) } == lock?.manifestSHA256
        func parse(_ known: [String]?) throws -> Manifest {
            guard let text else { return try Manifest.load(path: manifestPath, knownModels: known) }  // says why it is unreadable
            return try Manifest.parse(text, file: manifestPath, knownModels: known)
        }
        if reconciler.config.wan2gpDirectory.isEmpty {
            guard lockVouches else {
                throw CommandError("no config file found and no \(lockPath) made from this manifest: set wan2gp_directory in a config (see config.yaml.example), or commit the lock that 'wgpm lock' writes")
            }
            catalog = nil
            manifest = try parse(nil)
        } else {
            let c = try reconciler.loadCatalog()
            catalog = c
            manifest = try parse(c.ids)
        }
    }
}

/// A warning on stderr, wrapped as every stderr line is (`wrappedForStandardError`).
func printWarning(_ text: String) {
    printError(wrappedForStandardError("wgpm: warning: " + text))
}

/// The one wrapping rule of everything wgpm writes to stderr (errors, warnings, notices, failed
/// jobs): on a terminal each line of `text` is wrapped on its own to its width (or to `COLUMNS`
/// when that is set), continuing under its text — a first line 4 columns in, "  - x" 4 columns
/// in; into a pipe or a log each line stays whole, for grep.
func wrappedForStandardError(_ text: String) -> String {
    let asked = ProcessInfo.processInfo.environment["COLUMNS"].flatMap(Int.init).flatMap { $0 >= 20 ? $0 : nil }
    guard let width = columns(of: STDERR_FILENO) ?? asked else { return text }
    return text.split(separator: "\n", omittingEmptySubsequences: false).map { line -> String in
        let indent = line.prefix { $0 == " " }.count
        let body = String(line.dropFirst(indent))
        let hanging = body.hasPrefix("- ") ? 2 : (indent == 0 ? 4 : 2)
        return wrapped(body, indent: indent, hanging: hanging, width: width).joined(separator: "\n")
    }.joined(separator: "\n")
}

func printError(_ text: String) {
    writeStandardError(text.hasSuffix("\n") ? text : text + "\n")
}

/// Writes to stderr with write(2), ignoring failures: a closed pipe (`wgpm apply 2>&1 | head`)
/// must not stop wgpm halfway through a job. SIGPIPE is ignored at start for the same reason.
func writeStandardError(_ text: String) {
    var bytes = Array(text.utf8)
    var offset = 0
    while offset < bytes.count {
        let n = bytes.withUnsafeMutableBytes { write(STDERR_FILENO, $0.baseAddress! + offset, $0.count - offset) }
        if n < 0 && errno == EINTR { continue }
        if n <= 0 { return }
        offset += n
    }
}

var stdoutIsTerminal: Bool { isatty(STDOUT_FILENO) == 1 }

/// The width for text on stdout: the terminal's, else `COLUMNS`, else 80 (a CI log, a file).
var outputColumns: Int {
    if let width = columns(of: STDOUT_FILENO) { return width }
    if let columns = ProcessInfo.processInfo.environment["COLUMNS"].flatMap(Int.init), columns >= 40 { return columns }
    return 80
}

var terminalStyle: TerminalStyle {
    TerminalStyle.detect(isTerminal: stdoutIsTerminal, environment: ProcessInfo.processInfo.environment)
}

/// A failure of the command's work (exit 1), as opposed to a usage error (exit 64).
struct CommandError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
