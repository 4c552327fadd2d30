import Catalog
import Foundation
import Manifest
import Planner

extension Manifest {
    /// The models with their settings as text, for a lock to record and `wgpm diff` to compare.
    public var modelRecords: [ModelRecord] {
        models.map { m in
            let s = m.settings
            return ModelRecord(id: m.id, settings: [
                "transformer_quantization": s.transformerQuantization.rawValue,
                "text_encoder_quantization": s.textEncoderQuantization.rawValue,
                "dtype": s.dtype.rawValue,
                "shared_files": String(s.sharedFiles),
                "variants": s.allVariants ? "all" : "default",
            ])
        }.sorted { $0.id < $1.id }
    }
}

/// One of `wgpm diff`'s two inputs, read and checked.
public struct DiffInput: Sendable {
    public enum Kind: String, Sendable, Codable { case lock, manifest }
    public var file: String
    public var kind: Kind
    public var side: DiffSide
    public var warnings: [String]
}

/// An input of `wgpm diff` that cannot be used.
public struct DiffInputError: Error, CustomStringConvertible {
    public var description: String
}

/// What a diff input is, judged from its text: a lock is a JSON object, anything else is read
/// as a manifest (whose parser then says what is wrong with it).
public func diffInputKind(_ path: String) throws -> DiffInput.Kind {
    guard let data = FileManager.default.contents(atPath: path) else {
        let reason = FileManager.default.fileExists(atPath: path) ? "cannot be read" : "does not exist"
        throw DiffInputError(description: "\(path) \(reason). Pass two manifests or locks, e.g. 'git show origin/main:wgpm.lock > base.lock' then 'wgpm diff base.lock wgpm.lock'.")
    }
    let first = data.first { ![0x20, 0x09, 0x0A, 0x0D].contains($0) }
    return first == UInt8(ascii: "{") ? .lock : .manifest
}

extension DiffInput {
    /// Reads a lock: no catalog, no config, no network.
    public static func lock(_ path: String) throws -> DiffInput {
        guard let lock = try LockFile.load(path) else { throw DiffInputError(description: "\(path) does not exist.") }
        var warnings: [String] = []
        if lock.models == nil {
            warnings.append("\(path) does not record its models' settings (written by an earlier wgpm); settings changes are shown as the files they swap. Run 'wgpm lock' to record them.")
        }
        return DiffInput(file: path, kind: .lock, side: DiffSide(files: lock.files, models: lock.models), warnings: warnings)
    }
}

extension Reconciler {
    /// Reads a manifest as `plan` does: the catalog expands its models, and identities come from
    /// the lock next to it when there is one, else from the state cache or the Hub.
    public func diffInput(manifestAt path: String, catalog: Catalog) throws -> DiffInput {
        let manifest = try Manifest.load(path: path, knownModels: catalog.ids)
        let lockPath = LockFile.path(forManifest: path)
        let lock = try LockFile.load(lockPath)
        let desired = try desiredState(manifest: manifest, catalog: catalog, refresh: false, lock: lock, lockPath: lockPath)
        return DiffInput(file: path, kind: .manifest, side: DiffSide(files: desired.files, models: manifest.modelRecords),
                         warnings: desired.warnings)
    }
}
