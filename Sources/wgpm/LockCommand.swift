import ArgumentParser
import Foundation
import Planner
import Manifest
import Reconciler

struct LockCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lock",
        abstract: "Write or refresh the lock file: every desired file with its commit, hash and size.")

    @OptionGroup var configOptions: ConfigOptions

    @Option(name: [.short, .customLong("manifest")], help: ArgumentHelp("The manifest; the lock is written next to it (wgpm.yaml -> wgpm.lock).", valueName: "file"),
            completion: .file(extensions: ["yaml", "yml"]))
    var manifest = "wgpm.yaml"

    @Flag(help: "Resolve again on the Hub instead of keeping the pinned commits (all files, or those of MODEL…).")
    var update = false

    @Argument(help: "With --update: only the files of these model ids (and files: entries with 'files:').",
              completion: .custom { _, _, prefix in modelIDCompletions(prefix) })
    var models: [String] = []

    func validate() throws {
        if !models.isEmpty && !update { throw ValidationError("naming models needs --update") }
    }

    func run() throws {
        let reconciler = try configOptions.reconciler()
        let catalog = try reconciler.loadCatalog()
        let manifest = try Manifest.load(path: self.manifest, knownModels: catalog.ids)
        let lockPath = LockFile.path(forManifest: self.manifest)
        // `--update` of everything resolves every file again, so it does not read the old lock:
        // that is the way out of a lock that cannot be used.
        var existing = update && models.isEmpty ? nil : try LockFile.load(lockPath)
        var sharedNote: String?
        if update && !models.isEmpty {
            let inManifest = Set(manifest.models.map(\.id))
            for id in models where id != "files:" {
                guard catalog.ids.contains(id) else {
                    throw CommandError("unknown model id '\(id)'" + (catalog.suggestion(for: id).map { "; did you mean \($0)?" } ?? ".") + " Run 'wgpm models' to list the catalog.")
                }
                guard inManifest.contains(id) else {
                    throw CommandError("\(id) is not in \(self.manifest), so its lock entries cannot be updated; the manifest's models are "
                                       + (inManifest.isEmpty ? "none" : inManifest.sorted().joined(separator: ", ")))
                }
            }
            // Every file a named model wants is resolved again, shared ones too: a model's
            // update must not leave it with an old tokenizer because another model wants it.
            let named = Set(models)
            let shared = (existing?.files ?? []).filter { !Set($0.wantedBy).isDisjoint(with: named) && !Set($0.wantedBy).isSubset(of: named) }
            if !shared.isEmpty {
                let others = Set(shared.flatMap(\.wantedBy)).subtracting(named).sorted()
                sharedNote = "\(counted(shared.count, "updated file")) " + (shared.count == 1 ? "is" : "are")
                    + " also wanted by \(others.joined(separator: ", ")): the new pins hold for them too."
            }
            existing?.files.removeAll { !Set($0.wantedBy).isDisjoint(with: named) }
        }
        // Pinned entries are reused, the rest are resolved on the Hub now (a fresh look at main).
        let desired = try reconciler.desiredState(manifest: manifest, catalog: catalog, refresh: update,
                                                  lock: existing.map { LockFile(manifestSHA256: "", files: $0.files) },
                                                  lockPath: lockPath)
        let missing = desired.files.filter { $0.commit == nil && $0.expected.sha256 == nil && $0.expected.gitSHA1 == nil }
        for f in missing { printWarning("\(f.path): no identity known (not a Hub URL and no sha256 in the manifest)") }
        let lock = LockFile(manifestSHA256: LockFile.digest(manifest.text), files: desired.files, models: manifest.modelRecords)
        let previous = (try? LockFile.load(lockPath)) ?? nil
        try lock.write(to: lockPath)
        let before = Dictionary((previous?.files ?? []).map { ($0.path, $0) }, uniquingKeysWith: { a, _ in a })
        let changed = lock.files.filter { before[$0.path] != $0 }.count
        let removed = Set(before.keys).subtracting(lock.files.map(\.path)).count
        print("Wrote \(lockPath): \(counted(lock.files.count, "file")) (\(changed) new or changed, \(removed) removed), "
              + "\(counted(desired.stats.hubRequests, "Hub request")).")
        if let sharedNote { print(sharedNote) }
    }
}
