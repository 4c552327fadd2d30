import ArgumentParser
import Foundation
import Reconciler

struct DoctorCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "doctor",
        abstract: "Check config, paths, databases, Hub and token, link support and free space.")

    @OptionGroup var configOptions: ConfigOptions

    func run() throws {
        let reconciler = try configOptions.reconciler(allowMissingConfig: true)
        let checks = reconciler.diagnose()
        for c in checks {
            let mark = c.status == .ok ? "ok  " : c.status == .warn ? "warn" : "FAIL"
            print("  \(mark)  \(c.subject): \(c.detail)")
        }
        let failed = checks.filter { $0.status == .fail }.count
        print(failed == 0 ? "No problems found." : "\(failed) problem\(failed == 1 ? "" : "s") to fix.")
        if failed > 0 { throw ExitCode(1) }
    }
}
