import ArgumentParser
import Foundation
import Manifest
import Reconciler
import Planner

struct DoctorCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "doctor",
        abstract: "Check config, paths, databases, Hub and token, link support and free space.")

    @OptionGroup var configOptions: ConfigOptions

    func run() throws {
        // A broken config is the first finding, not the end of the run: the checks that do
        // not need it still run.
        var problem: String?
        let config: MachineConfig
        do {
            config = try configOptions.load(allowMissing: true)
        } catch {
            problem = "\(error)"
            config = try MachineConfig.fallback(environment: ProcessInfo.processInfo.environment,
                                                cwd: FileManager.default.currentDirectoryPath)
        }
        let reconciler = try Reconciler(config: config, context: Context(notice: { printError("wgpm: \($0)") }))
        let checks = reconciler.diagnose(configProblem: problem)
        for c in checks {
            let mark = switch c.status { case .ok: "ok  "; case .warn: "warn"; case .fail: "FAIL"; case .skip: "skip" }
            print("  \(mark)  \(c.subject): \(c.detail)")
        }
        let failed = checks.filter { $0.status == .fail }.count
        let warned = checks.filter { $0.status == .warn }.count
        if failed > 0 {
            print("\(counted(failed, "problem")) to fix" + (warned > 0 ? ", and \(counted(warned, "warning"))." : "."))
            throw ExitCode(1)
        }
        print(warned > 0 ? "Nothing stops wgpm; \(counted(warned, "warning")) above." : "No problems found.")
    }
}
