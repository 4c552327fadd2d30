import Catalog
import Foundation
import Manifest
import Planner
#if canImport(Glibc)
import Glibc
#endif

/// `wgpm trace` could not learn this Wan2GP's files; nothing in the state directory changed.
public enum TraceError: Error, CustomStringConvertible {
    case noTracer(searched: [String])
    case noPython(String)
    case tracerFailed(python: String, status: Int32)
    case changedDuringTrace(before: String, after: String)
    case inexact([TraceMismatch])

    public var description: String {
        switch self {
        case .noTracer(let searched):
            return "the tracer (tools/wan2gp_trace/trace.py) was not found; looked at \(searched.joined(separator: ", ")). Set WGPM_TRACER to its path (it is in wgpm's repository)"
        case .noPython(let why):
            return "no Python to run Wan2GP's code with: \(why). Set wan2gp_python in the config to the python of your Wan2GP install"
        case .tracerFailed(let python, let status):
            return "the tracer failed (exit status \(status)) under \(python); its messages are above. Nothing was stored"
        case .changedDuringTrace(let before, let after):
            return "the Wan2GP checkout changed while it was traced (fingerprint \(before.prefix(12)) before, \(after.prefix(12)) after); run `wgpm trace` again when it is settled"
        case .inexact(let mismatches):
            let shown = mismatches.prefix(5).map { "  \($0)" }.joined(separator: "\n")
            return "what wgpm derived from the trace does not reproduce it in \(counted(mismatches.count, "model-setting cell")), so it was not stored:\n\(shown)\nPlease report this with the Wan2GP commit"
        }
    }
}

/// What `wgpm trace` stored.
public struct TraceOutcome: Sendable {
    public var path: String
    public var knowledge: TracedKnowledge
    public var models: Int
    /// Models the tracer could not load, with its reason; their files fall back to the
    /// architecture's knowledge.
    public var errors: [String: String]
}

extension Reconciler {
    /// The tracer script: `$WGPM_TRACER`, then beside an installed binary
    /// (`../share/wgpm/wan2gp_trace/trace.py`), then the source tree wgpm was built from.
    public static func locateTracer(environment: [String: String], executable: String, sourceFile: String = #filePath) -> Result<String, TraceError> {
        if let explicit = environment["WGPM_TRACER"], !explicit.isEmpty {
            return isRegular(explicit) ? .success(explicit) : .failure(.noTracer(searched: ["WGPM_TRACER=\(explicit)"]))
        }
        let exeDir = ((executable as NSString).resolvingSymlinksInPath as NSString).deletingLastPathComponent
        let repo = (((sourceFile as NSString).deletingLastPathComponent as NSString).deletingLastPathComponent as NSString).deletingLastPathComponent
        let candidates = [
            (exeDir as NSString).appendingPathComponent("../share/wgpm/wan2gp_trace/trace.py"),
            (repo as NSString).appendingPathComponent("tools/wan2gp_trace/trace.py"),
        ].map { ($0 as NSString).standardizingPath }
        if let hit = candidates.first(where: isRegular) { return .success(hit) }
        return .failure(.noTracer(searched: candidates))
    }

    /// The Python of the user's Wan2GP: `explicit` (`--python`), `wan2gp_python`, the checkout's
    /// own venv, then `python3` on PATH.
    public func tracerPython(explicit: String?, environment: [String: String]) -> Result<(String, String), TraceError> {
        if let explicit { return isExecutable(explicit) ? .success((explicit, "--python")) : .failure(.noPython("\(explicit) (--python) is not an executable file")) }
        if let configured = config.wan2gpPython {
            return isExecutable(configured) ? .success((configured, "wan2gp_python in the config"))
                : .failure(.noPython("\(configured) (wan2gp_python in the config) is not an executable file"))
        }
        for venv in ["venv", ".venv", "env"] {
            let p = (config.wan2gpDirectory as NSString).appendingPathComponent("\(venv)/bin/python")
            if isExecutable(p) { return .success((p, "the checkout's \(venv)/")) }
        }
        for dir in (environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin").split(separator: ":") {
            let p = "\(dir)/python3"
            if isExecutable(p) { return .success((p, "python3 on PATH")) }
        }
        return .failure(.noPython("no wan2gp_python in the config, no venv/ in \(config.wan2gpDirectory) and no python3 on PATH"))
    }

    /// Runs the tracer on the configured checkout; its progress goes to this process's stderr.
    /// The tracer writes to a temporary file in the knowledge folder, removed here.
    public func runTracer(script: String, python: String) throws -> WanTrace {
        try FileManager.default.createDirectory(atPath: config.knowledgeDirectory, withIntermediateDirectories: true)
        let out = (config.knowledgeDirectory as NSString).appendingPathComponent(".trace-\(getpid()).json")
        defer { unlink(out) }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: python)
        process.arguments = [script, config.wan2gpDirectory, "--out", out]
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = FileHandle.standardError
        process.standardError = FileHandle.standardError
        do { try process.run() } catch { throw TraceError.noPython("\(python) could not be started: \(error.localizedDescription)") }
        process.waitUntilExit()
        guard process.terminationReason == .exit, process.terminationStatus == 0 else {
            throw TraceError.tracerFailed(python: python, status: process.terminationStatus)
        }
        guard let data = readRegularFile(out, limit: 256 << 20) else {
            throw TraceError.tracerFailed(python: python, status: 0)
        }
        return try WanTrace.decode(data, file: "the tracer's output")
    }

    /// Derives knowledge from a trace of the configured checkout, checks that it reproduces
    /// the trace in every cell, and stores it under the checkout's fingerprint, where every
    /// later command finds it.
    ///
    /// `writeTo` and `anyFingerprint` are for making wgpm's bundled knowledge from traces of
    /// other commits, whose definitions alone are at hand.
    public func learn(from trace: WanTrace, writeTo explicitPath: String? = nil, anyFingerprint: Bool = false) throws -> TraceOutcome {
        let now = CheckoutVersion.read(config.wan2gpDirectory)
        guard anyFingerprint || now.fingerprint == trace.fingerprint else {
            throw TraceError.changedDuringTrace(before: trace.fingerprint, after: now.fingerprint)
        }
        let (knowledge, mismatches) = try KnowledgeDerivation.derive(trace: trace, wan2gpDirectory: config.wan2gpDirectory,
                                                                     commitDate: nil)
        guard mismatches.isEmpty else { throw TraceError.inexact(mismatches) }
        let path: String
        if let explicitPath {
            path = explicitPath
        } else {
            try FileManager.default.createDirectory(atPath: config.knowledgeDirectory, withIntermediateDirectories: true)
            path = (config.knowledgeDirectory as NSString).appendingPathComponent("\(trace.fingerprint).json")
        }
        try writeAtomically(String(decoding: try knowledge.encoded(), as: UTF8.self), to: path)
        let errors = trace.errors ?? [:]
        return TraceOutcome(path: path, knowledge: knowledge, models: trace.models.count - errors.count, errors: errors)
    }
}

private func isRegular(_ path: String) -> Bool {
    var st = stat()
    return stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFREG
}

private func isExecutable(_ path: String) -> Bool {
    isRegular(path) && access(path, X_OK) == 0
}
