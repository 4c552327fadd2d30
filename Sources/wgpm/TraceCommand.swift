import ArgumentParser
import Catalog
import Foundation
import Planner
import Reconciler
import Rendering

struct TraceCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "trace",
        abstract: "Ask the configured Wan2GP's own code which files it downloads, for a version wgpm does not know.",
        discussion: """
            Runs tools/wan2gp_trace/trace.py with the Python of your Wan2GP install (wan2gp_python in \
            the config, else the checkout's venv/, else python3): it imports Wan2GP's wgp.py with its \
            heavy modules stubbed and its download functions replaced by recorders, loads every model \
            under every setting, and downloads nothing. wgpm keeps the result in the state directory, \
            keyed by the checkout's fingerprint; plan, show and models then use it.
            """)

    @OptionGroup var configOptions: ConfigOptions

    @Option(help: ArgumentHelp("The Python to run Wan2GP's code with.", valueName: "path"), completion: .file())
    var python: String?

    @Option(help: .hidden, completion: .file(extensions: ["json"]))
    var traceFile: String?

    @Option(help: .hidden, completion: .file(extensions: ["json"]))
    var knowledgeOut: String?

    func run() throws {
        let reconciler = try configOptions.reconciler()
        let config = reconciler.config
        guard !config.wan2gpDirectory.isEmpty else {
            throw CommandError("no wan2gp_directory configured: set it in the config (see config.yaml.example)")
        }
        let version = CheckoutVersion.read(config.wan2gpDirectory)
        let trace: WanTrace
        if let traceFile {
            guard let data = readRegularFile(traceFile, limit: 256 << 20) else { throw CommandError("cannot read \(traceFile): not a readable regular file of at most 256 MiB; give the --out file of trace.py") }
            trace = try WanTrace.decode(data, file: traceFile)
        } else {
            let env = ProcessInfo.processInfo.environment
            let script = try Reconciler.locateTracer(environment: env, executable: CommandLine.arguments[0]).get()
            let (py, origin) = try reconciler.tracerPython(explicit: python, environment: env).get()
            printError("wgpm: tracing \(config.wan2gpDirectory) (\(version.wangpVersion.map { "WanGP_version \($0)" } ?? "no WanGP_version"), fingerprint \(version.fingerprint.prefix(12))) with \(py) (\(origin))")
            trace = try reconciler.runTracer(script: script, python: py)
        }
        let outcome = try reconciler.learn(from: trace, writeTo: knowledgeOut, anyFingerprint: knowledgeOut != nil)
        for (id, why) in outcome.errors.sorted(by: { $0.key < $1.key }) {
            printWarning("model \(id) could not be traced (\(why)); its files come from its architecture's")
        }
        let k = outcome.knowledge
        print("Traced \(counted(outcome.models, "model")) under 12 settings: \(counted(k.core.count, "file")) every model downloads, "
              + "support files for \(counted(k.architectures.count, "architecture")).")
        print("Stored \(outcome.path); plan, show and models use it for this checkout.")
    }
}
