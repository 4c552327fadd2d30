import ArgumentParser
import Foundation
import Manifest
import Reconciler
import Planner
import Rendering

struct DoctorCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "doctor",
        abstract: "Check config, paths, databases, Hub and token, link support and free space.")

    @OptionGroup var configOptions: ConfigOptions

    func run() throws {
        // A broken config is the first finding, not the end of the run: the checks that do
        // not need it still run.
        // A config with bad lines still gives its good ones (a bad setting keeps its default),
        // and the checks run with them; only a config that cannot be read at all leaves them out.
        let env = ProcessInfo.processInfo.environment
        let cwd = FileManager.default.currentDirectoryPath
        var problem: String?
        var partial = false
        let config: MachineConfig
        do {
            // No config at all is the first problem to fix, as every other command says.
            config = try configOptions.load()
        } catch {
            problem = "\(error)"
            if let lenient = MachineConfig.loadLeniently(explicit: configOptions.config, environment: env, cwd: cwd).config {
                config = lenient
                partial = true
            } else {
                config = try MachineConfig.fallback(environment: env, cwd: cwd)
            }
        }
        let reconciler = try Reconciler(config: config, context: Context(notice: { printError("wgpm: \($0)") }))
        let checks = reconciler.diagnose(configProblem: problem, usableAnyway: partial)
        for c in checks {
            let mark = switch c.status { case .ok: "ok  "; case .warn: "warn"; case .fail: "FAIL"; case .skip: "skip" }
            // Within the width; a detail of several lines (a config's problems) continues
            // under its first line.
            // (On a terminal; a log keeps each check on one line, for grep.)
            let width = columns(of: STDOUT_FILENO) ?? Int.max / 2
            let lines = c.detail.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
            var out = wrapped("\(mark)  \(c.subject): " + (lines.first ?? ""), indent: 2, hanging: 6, width: width)
            for more in lines.dropFirst() { out += wrapped(more.trimmingCharacters(in: .whitespaces), indent: 8, hanging: 2, width: width) }
            print(out.joined(separator: "\n"))
        }
        let failed = checks.filter { $0.status == .fail }.count
        let warned = checks.filter { $0.status == .warn }.count
        if failed > 0 {
            print("\(counted(failed, "check")) failed" + (warned > 0 ? ", \(counted(warned, "warning"))." : ".") + " Fix what the FAIL lines say, then run 'wgpm doctor' again.")
            throw ExitCode(1)
        }
        print(warned > 0 ? "Nothing stops wgpm; \(counted(warned, "warning")) above." : "No problems found.")
    }
}
