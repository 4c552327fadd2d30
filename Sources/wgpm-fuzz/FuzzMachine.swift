import Foundation
import Manifest
import Planner
import Reconciler
import Rendering

/// A machine in the scratch folder that the plan-level formats plan on: a config, empty ckpts/
/// and loras/ (one file with other content than its pin), a state database, a manifest of two
/// `files:` and the lock pinning them. Made once per process; no catalog, no network.
struct FuzzMachine: Sendable {
    let dir: String
    let reconciler: Reconciler
    let manifest: Manifest
    let lock: LockFile

    static let shared: FuzzMachine? = {
        let dir = scratch + "/machine"
        let fm = FileManager.default
        do {
            for sub in ["ckpts", "loras", "state", "wan2gp"] {
                try fm.createDirectory(atPath: dir + "/" + sub, withIntermediateDirectories: true)
            }
            _ = fm.createFile(atPath: dir + "/ckpts/present.safetensors", contents: Data("not the pinned bytes".utf8))
            let config = try MachineConfig.parse("""
                wan2gp_directory: \(dir)/wan2gp
                ckpts_directory: \(dir)/ckpts
                loras_directory: \(dir)/loras
                state_directory: \(dir)/state
                min_free_gb: 0
                """, file: dir + "/config.yaml", environment: ["HOME": dir])
            let text = """
                version: 1
                files:
                  - url: https://huggingface.co/org/repo/resolve/main/a.safetensors
                    path: ckpts/present.safetensors
                  - url: https://huggingface.co/org/repo/resolve/main/b.safetensors
                    path: loras/wan/b.safetensors

                """
            let manifest = try Manifest.parse(text, file: dir + "/wgpm.yaml", knownModels: nil)
            let lock = LockFile(manifestSHA256: LockFile.digest(text), files: [
                DesiredFile(path: "ckpts/present.safetensors", url: "https://huggingface.co/org/repo/resolve/main/a.safetensors",
                            repo: "org/repo", commit: String(repeating: "1", count: 40),
                            expected: FileIdentity(size: 20, sha256: String(repeating: "ab", count: 32)), wantedBy: ["files:"]),
                DesiredFile(path: "loras/wan/b.safetensors", url: "https://huggingface.co/org/repo/resolve/main/b.safetensors",
                            repo: "org/repo", commit: String(repeating: "1", count: 40),
                            expected: FileIdentity(size: 5 << 20, sha256: String(repeating: "cd", count: 32)), wantedBy: ["files:"]),
            ])
            return FuzzMachine(dir: dir, reconciler: try Reconciler(config: config), manifest: manifest, lock: lock)
        } catch {
            FileHandle.standardError.write(Data("wgpm-fuzz: cannot make the fuzz machine: \(error)\n".utf8))
            exit(70)
        }
    }()

    /// `wgpm plan` with a lock read from the input: its files, vouched for as this manifest's,
    /// are the desired state; the plan is then rendered as text and JSON, as `plan` prints it.
    static func planWithLock(_ data: Data) throws -> String {
        guard let m = shared else { return "no machine" }
        guard let read = try withTempFile("plan-wgpm.lock", data, { try LockFile.load($0) }) else { return "no lock" }
        let lock = LockFile(manifestSHA256: m.lock.manifestSHA256, files: read.files)
        let result = try m.reconciler.plan(manifest: m.manifest, catalog: nil, lock: lock, lockPath: m.dir + "/wgpm.lock")
        return try render(result)
    }

    /// `wgpm plan --inventory FILE` with the input as the recording, against the machine's lock.
    static func planWithInventory(_ data: Data) throws -> String {
        guard let m = shared else { return "no machine" }
        let recorded = try withTempFile("plan-inventory.json", data) { try RecordedInventory.load($0) }
        let result = try m.reconciler.plan(manifest: m.manifest, catalog: nil, lock: m.lock, lockPath: m.dir + "/wgpm.lock",
                                           recorded: recorded)
        return try render(result)
    }

    static func render(_ result: PlanResult) throws -> String {
        _ = renderHuman(result.plan, style: TerminalStyle(color: true), verbose: true)
        _ = try renderJSON(result.document(manifest: "wgpm.yaml"))
        return "planned: \(result.plan.actions.count) actions, \(result.plan.unchanged.count) unchanged"
    }
}
