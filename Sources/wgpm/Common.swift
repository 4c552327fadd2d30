import ArgumentParser
import Foundation
import Manifest
import Reconciler
import Rendering

/// Options every command that reads the machine config shares.
struct ConfigOptions: ParsableArguments {
    @Option(name: .long, help: "Config file (default: $WGPM_CONFIG, ./config.yaml, ~/.config/wgpm/config.yaml).")
    var config: String?

    func load() throws -> MachineConfig {
        try MachineConfig.load(explicit: config, environment: ProcessInfo.processInfo.environment,
                               cwd: FileManager.default.currentDirectoryPath)
    }

    func reconciler() throws -> Reconciler {
        let context = Context(notice: { line in printError("wgpm: \(line)") })
        return try Reconciler(config: try load(), context: context)
    }
}

func printError(_ text: String) {
    FileHandle.standardError.write(Data((text.hasSuffix("\n") ? text : text + "\n").utf8))
}

var stdoutIsTerminal: Bool { isatty(STDOUT_FILENO) == 1 }

var terminalStyle: TerminalStyle {
    TerminalStyle.detect(isTerminal: stdoutIsTerminal, environment: ProcessInfo.processInfo.environment)
}

/// Writes a file by way of a temporary file in the same folder, so no partial file is left.
func writeAtomically(_ text: String, to path: String) throws {
    let url = URL(fileURLWithPath: path)
    let tmp = url.deletingLastPathComponent().appendingPathComponent(".\(url.lastPathComponent).tmp-\(getpid())")
    try Data(text.utf8).write(to: tmp)
    if rename(tmp.path, url.path) != 0 {
        try? FileManager.default.removeItem(at: tmp)
        throw ValidationError("cannot write \(path): \(String(cString: strerror(errno)))")
    }
}
