import Catalog
import Crypto
import Foundation
import HubClient
import Inventory
import Manifest
import Planner
import Rendering
import Reuse
import State

/// The effects the reconciler uses. Production wires the real ones; tests pass fakes.
public struct Context: Sendable {
    public var fileSystem: FileSystem
    public var transport: HTTPTransport
    public var sleeper: Sleeper
    public var clock: @Sendable () -> Double
    /// Lines about waits and retries, for stderr.
    public var notice: @Sendable (String) -> Void
    /// What a desired file's partial download already holds (the executor knows where and how
    /// it keeps partials); 0 when unknown.
    public var heldInPartial: @Sendable (DesiredFile) -> Int64 = { _ in 0 }

    public init(fileSystem: FileSystem = LocalFileSystem(), transport: HTTPTransport = CurlTransport(),
                sleeper: Sleeper = RealSleeper(), clock: @escaping @Sendable () -> Double = { Date().timeIntervalSince1970 },
                notice: @escaping @Sendable (String) -> Void = { _ in }) {
        self.fileSystem = fileSystem
        self.transport = transport
        self.sleeper = sleeper
        self.clock = clock
        self.notice = notice
    }
}

/// Everything `plan` learned, ready for rendering.
public struct PlanResult: Sendable {
    public var plan: Plan
    public var desired: [DesiredFile]
    public var observed: ObservedState
    public var warnings: [String]
    public var metadata: MetadataStats
    public var inventory: InventoryStats
    public var reuse: ReuseStats
    /// Digest of the inputs (manifest, catalog, desired and observed state), for saved plans.
    public var fingerprint: [String: String]
    /// The Wan2GP version the desired files were computed for; nil when the lock alone answered.
    public var selection: KnowledgeSelection? = nil
}

/// Wires catalog, Hub metadata, inventory and planner for one machine config.
public struct Reconciler: Sendable {
    public var config: MachineConfig
    public var context: Context
    public var state: StateDatabase
    public var hub: HubClient

    public init(config: MachineConfig, context: Context = Context()) throws {
        self.config = config
        self.context = context
        state = try StateDatabase(directory: config.stateDirectory)
        hub = HubClient(endpoint: config.hubEndpoint, token: config.token, transport: context.transport,
                        sleeper: context.sleeper, onWait: context.notice)
    }

    /// The configured Wan2GP's catalog, computed with the knowledge for its version (traced
    /// knowledge from `wgpm trace` first).
    public func loadCatalog() throws -> Catalog {
        try Catalog.load(wan2gpDirectory: config.wan2gpDirectory, tracedDirectory: config.knowledgeDirectory)
    }

    public var mapper: PathMapper { PathMapper(ckpts: config.ckptsDirectory, loras: config.lorasDirectory) }

    /// Computes the plan for a manifest. Nothing on disk changes except the state database.
    public func plan(manifest: Manifest, catalog: Catalog?, refresh: Bool = false, prune: Bool = false,
                     lock: LockFile? = nil, lockPath: String = "wgpm.lock", locked: Bool = false,
                     recorded: RecordedInventory? = nil) throws -> PlanResult {
        let desired = try desiredState(manifest: manifest, catalog: catalog, refresh: refresh, lock: lock,
                                       lockPath: lockPath, locked: locked)
        let managed = try state.managedPaths()
        let inventory = Inventory(fileSystem: context.fileSystem, state: state, mapper: mapper,
                                  workers: config.parallelHashWorkers)
        var observed: ObservedState
        var stats = InventoryStats()
        if let recorded {
            observed = recorded.observed(for: desired.files)
        } else {
            // Managed paths are only looked at (never hashed): plain plan counts what --prune would free.
            (observed, stats) = try inventory.observe(desired.files, extraPaths: Array(managed))
        }
        if recorded == nil {
            observed.unwritableFolders = unwritableFolders(for: desired.files.map(\.path) + managed)
            observed.managedPaths = managed
            for file in desired.files where file.expected.sha256 != nil || file.expected.gitSHA1 != nil {
                let held = context.heldInPartial(file)
                if held > 0 { observed.partialBytes[file.path] = held }
            }
        }
        var warnings = desired.warnings
        var reuse = ReuseStats()
        // Local sources are searched only for files that are not already right at their target.
        let needing = desired.files.filter { !satisfies(observed.paths[$0.path] ?? .missing, $0.expected) }
        if !needing.isEmpty && !config.sources.isEmpty && recorded == nil {
            let index = hashIndex()
            let found = try index.sync(warn: { warnings.append($0) })
            (observed.candidates, reuse) = try index.candidates(for: needing, files: found, warn: { warnings.append($0) })
        }
        let mode = LinkMode(rawValue: config.linkMode.rawValue) ?? .symlink
        let options = PlanOptions(prune: prune, linkMode: mode, reserveBytes: config.minFreeBytes)
        let plan = makePlan(desired: desired.files, observed: observed, options: options)
        return PlanResult(plan: plan, desired: desired.files, observed: observed, warnings: warnings,
                          metadata: desired.stats, inventory: stats, reuse: reuse,
                          fingerprint: fingerprint(manifest: manifest, catalog: catalog, desired: desired.files, observed: observed),
                          selection: desired.selection)
    }

    /// The folders among those holding `paths` (and each root's partial folder) that this user
    /// cannot write in, keyed by their path relative to the roots: where apply would fail.
    func unwritableFolders(for paths: [String]) -> [String: String] {
        var folders = Set(paths.map { ($0 as NSString).deletingLastPathComponent })
        for root in mapper.roots.map(\.name) where folders.contains(where: { isBelow($0, root: root) || $0 == root }) {
            folders.insert(root + "/.wgpm-partial")
        }
        var found: [String: String] = [:]
        var asked: [String: (folder: String, reason: String)?] = [:]
        for folder in folders.sorted() {
            let root = folder.split(separator: "/").first.map(String.init) ?? folder
            guard let rootReal = mapper.directory(ofRoot: root) else { continue }
            let real = folder == root ? rootReal : mapper.absolute(folder)
            let answer = asked[real] ?? context.fileSystem.writeProblem(folder: real)
            asked[real] = answer
            guard let answer else { continue }
            // Keyed by the folder that refused, or by its root when that lies above the root.
            let key = answer.folder.hasPrefix(rootReal + "/") ? root + answer.folder.dropFirst(rootReal.count)
                : root
            found[key] = answer.reason
        }
        return found
    }

    /// The hash index over the configured local sources.
    public func hashIndex() -> HashIndex {
        let sources: [any LocalSource] = config.sources.map { source -> any LocalSource in
            switch source {
            case .invokeai(let db, let models):
                return InvokeAISource(database: db, modelsDirectory: models, lockTimeout: Double(config.sourceLockTimeout),
                                      whenLocked: config.whenSourceLocked == .skip ? .skip : .fail, notice: context.notice)
            case .hfCache(let root): return HFCacheSource(root: root)
            case .directory(let root): return DirectorySource(root: root)
            }
        }
        return HashIndex(sources: sources, state: state, fileSystem: context.fileSystem, workers: config.parallelHashWorkers)
    }

    /// Digests of each input, so a saved plan can tell which one changed.
    func fingerprint(manifest: Manifest, catalog: Catalog?, desired: [DesiredFile], observed: ObservedState) -> [String: String] {
        var catalogHash = SHA256()
        for id in catalog?.ids ?? [] {
            let def = catalog!.models[id]!
            for file in def.files {
                catalogHash.update(data: Data(file.utf8))
                if let data = FileManager.default.contents(atPath: file) { catalogHash.update(data: data) }
            }
        }
        var observedHash = SHA256()
        for path in observed.paths.keys.sorted() {
            observedHash.update(data: Data("\(path)=\(describe(observed.paths[path]!))\n".utf8))
        }
        var desiredHash = SHA256()
        for f in desired {
            desiredHash.update(data: Data("\(f.path) \(f.url) \(f.expected.size ?? -1) \(f.expected.sha256 ?? f.expected.gitSHA1 ?? "-")\n".utf8))
        }
        return [
            "manifest_content_sha256": hexString(SHA256.hash(data: Data(manifest.content.utf8))),
            "catalog_sha256": hexString(catalogHash.finalize()),
            "desired_sha256": hexString(desiredHash.finalize()),
            "observed_sha256": hexString(observedHash.finalize()),
        ]
    }
}

/// A one-line, stable description of an observation (for fingerprints and saved plans).
public func describe(_ observation: Observation) -> String {
    switch observation {
    case .missing: return "missing"
    case .directory: return "directory"
    case .other: return "other"
    case .unreadable(let reason): return "unreadable (\(reason))"
    case .file(let c): return "file size=\(c.size) sha256=\(c.sha256 ?? "-") sha1=\(c.gitSHA1 ?? "-")" + (c.formatProblem.map { " format=\($0)" } ?? "")
    case .symlink(let t, let c): return "symlink -> \(t) " + (c.map { "size=\($0.size) sha256=\($0.sha256 ?? "-")" } ?? "dangling")
    }
}

