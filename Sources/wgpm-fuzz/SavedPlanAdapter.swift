import Foundation
import Manifest
import Planner
import Reconciler
import Rendering

/// The saved plan (`wgpm plan -o FILE`) as `wgpm apply FILE` reads it today: JSON through
/// JSONSerialization, then `stalenessReason(saved:fresh:)` against a fresh plan. The fresh plan is
/// made once per process from a lock-pinned manifest in a scratch folder (no catalog, no network),
/// so each input costs only the parse and the comparison.
///
/// The three lines marked API are all that touch the saved plan's interface. When the Codable
/// `SavedPlan` (with `load(_ path:)` and `stalenessReason(fresh:)`) lands, they become:
///     typealias Saved = SavedPlan
///     let saved = try withTempFile("plan.json", data) { try SavedPlan.load($0) }
///     return fresh.flatMap { saved.stalenessReason(fresh: $0) }
/// and `matchingSeed` can write the seed with
/// `SavedPlan(fresh, document: fresh.document(manifest: "wgpm.yaml"), pruned: false).render()`.
enum SavedPlanAdapter {
    typealias Saved = [String: Any]  // API

    /// What `wgpm apply FILE` would say: nil when the plan still matches, else why not.
    static func parse(_ data: Data) throws -> String? {
        guard let saved = try JSONSerialization.jsonObject(with: data) as? Saved else { return "not a JSON object" }  // API
        return fresh.flatMap { stalenessReason(saved: saved, fresh: $0) }  // API
    }

    /// A saved plan that still matches the fresh plan, as `wgpm plan -o` writes it: the seed that
    /// takes the fuzzer past the fingerprint checks (`wgpm-fuzz print-saved-plan-seed`).
    static func matchingSeed() throws -> String {
        guard let fresh else { return "" }
        var object = planJSONObject(fresh.plan, extra: ["manifest": "wgpm.yaml"])
        object["fingerprint"] = fresh.fingerprint
        object["pruned"] = false
        object["observed"] = Dictionary(uniqueKeysWithValues: fresh.observed.paths.map { ($0.key, describe($0.value)) })
        return try renderJSON(object)
    }

    /// The fresh plan compared against: two pinned files, one of them on disk with other content.
    static let fresh: PlanResult? = {
        let dir = scratch + "/plan-machine"
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
            let sha = String(repeating: "ab", count: 32)
            let lock = LockFile(manifestSHA256: LockFile.digest(text), files: [
                DesiredFile(path: "ckpts/present.safetensors", url: "https://huggingface.co/org/repo/resolve/main/a.safetensors",
                            repo: "org/repo", commit: String(repeating: "1", count: 40),
                            expected: FileIdentity(size: 20, sha256: sha), wantedBy: ["files:"]),
                DesiredFile(path: "loras/wan/b.safetensors", url: "https://huggingface.co/org/repo/resolve/main/b.safetensors",
                            repo: "org/repo", commit: String(repeating: "1", count: 40),
                            expected: FileIdentity(size: 5 << 20, sha256: String(repeating: "cd", count: 32)), wantedBy: ["files:"]),
            ])
            let reconciler = try Reconciler(config: config)
            return try reconciler.plan(manifest: manifest, catalog: nil, lock: lock, lockPath: dir + "/wgpm.lock")
        } catch {
            FileHandle.standardError.write(Data("wgpm-fuzz: cannot make the fresh plan for saved-plan inputs: \(error)\n".utf8))
            exit(70)
        }
    }()
}
