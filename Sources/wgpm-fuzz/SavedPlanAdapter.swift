import Foundation
import Manifest
import Planner
import Reconciler
import Rendering

/// The saved plan (`wgpm plan -o FILE`) as `wgpm apply FILE` reads it: `SavedPlan.load`, then
/// `stalenessReason(fresh:)` against a fresh plan. The fresh plan is
/// made once per process from a lock-pinned manifest in a scratch folder (no catalog, no network),
/// so each input costs only the parse and the comparison.
///
enum SavedPlanAdapter {
    /// What `wgpm apply FILE` would say: nil when the plan still matches, else why not.
    static func parse(_ data: Data) throws -> String? {
        let saved = try withTempFile("plan.json", data) { try SavedPlan.load($0) }
        return fresh.flatMap { saved.stalenessReason(fresh: $0) }
    }

    /// A saved plan that still matches the fresh plan, as `wgpm plan -o` writes it: the seed that
    /// takes the fuzzer past the fingerprint checks (`wgpm-fuzz print-saved-plan-seed`).
    static func matchingSeed() throws -> String {
        guard let fresh else { return "" }
        return try SavedPlan(fresh, document: fresh.document(manifest: "wgpm.yaml"), pruned: false).render()
    }

    /// The fresh plan compared against: the fuzz machine's plan of its own lock.
    static let fresh: PlanResult? = {
        guard let m = FuzzMachine.shared else { return nil }
        do {
            return try m.reconciler.plan(manifest: m.manifest, catalog: nil, lock: m.lock, lockPath: m.dir + "/wgpm.lock")
        } catch {
            FileHandle.standardError.write(Data("wgpm-fuzz: cannot make the fresh plan for saved-plan inputs: \(error)\n".utf8))
            exit(70)
        }
    }()
}
