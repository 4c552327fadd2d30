import Crypto
import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Inventory
import Planner

/// Everything a worker needs to carry out one plan action, stored as JSON in the queue.
///
/// The id is the sha256 of this description, so the same action enqueued twice is one job.
public struct JobSpec: Codable, Hashable, Sendable {
    public enum Kind: String, Codable, Sendable { case download, link, remove }
    public var kind: Kind
    /// Relative to the Wan2GP directory (`ckpts/…`, `loras/…`).
    public var path: String
    /// Absolute path of the target.
    public var target: String
    /// Folder for partial downloads, on the target's filesystem.
    public var partialDirectory: String?
    public var url: String?
    public var repo: String?
    /// Downloads come from this commit, so the bytes are the ones the plan was made for.
    public var commit: String?
    public var size: Int64?
    public var sha256: String?
    public var gitSHA1: String?
    public var linkFrom: String?
    public var linkMode: LinkMode?
    public var basis: String?
    /// True when the target exists now with other content (a replace action).
    public var replaces: Bool

    public var id: String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let data = (try? encoder.encode(self)) ?? Data(path.utf8)
        return SHA256.hash(data: data).map { String(format: "%02x", $0) }.joined()
    }

    public func encoded() -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return String(decoding: (try? encoder.encode(self)) ?? Data(), as: UTF8.self)
    }

    public static func decode(_ text: String) throws -> JobSpec {
        try JSONDecoder().decode(JobSpec.self, from: Data(text.utf8))
    }

    /// The jobs for a plan's actions; conflicts have none.
    /// The download a desired file would get (for asking what its partial file holds).
    public static func download(of file: DesiredFile, mapper: PathMapper) -> JobSpec {
        let root = mapper.root(of: file.path)?.directory ?? mapper.ckpts
        return JobSpec(kind: .download, path: file.path, target: mapper.absolute(file.path),
                       partialDirectory: root + "/.wgpm-partial", url: file.url, repo: file.repo,
                       commit: file.commit, size: file.expected.size, sha256: file.expected.sha256,
                       gitSHA1: file.expected.gitSHA1, replaces: false)
    }

    public static func from(_ plan: Plan, mapper: PathMapper) -> [JobSpec] {
        plan.actions.compactMap { action in
            let target = mapper.absolute(action.path)
            let root = mapper.root(of: action.path)?.directory ?? mapper.ckpts
            let file = action.file
            switch (action.kind, action.fetch) {
            case (.remove, _):
                return JobSpec(kind: .remove, path: action.path, target: target, replaces: false)
            case (.conflict, _), (_, nil):
                return nil
            case (_, .download(let url, let size)?):
                return JobSpec(kind: .download, path: action.path, target: target,
                               partialDirectory: root + "/.wgpm-partial", url: url, repo: file?.repo,
                               commit: file?.commit, size: size, sha256: file?.expected.sha256,
                               gitSHA1: file?.expected.gitSHA1, replaces: action.kind == .replace)
            case (_, .link(_, let from, let basis, let mode)?):
                // Repo and commit too: a source that fails verification falls back to a download.
                return JobSpec(kind: .link, path: action.path, target: target,
                               partialDirectory: root + "/.wgpm-partial", url: file?.url, repo: file?.repo,
                               commit: file?.commit, size: file?.expected.size, sha256: file?.expected.sha256,
                               gitSHA1: file?.expected.gitSHA1, linkFrom: from, linkMode: mode,
                               basis: basis.rawValue, replaces: action.kind == .replace)
            }
        }
    }
}

/// Errors of the executor stage: each says what happened to which path and what to do.
public enum ExecutorError: Error, CustomStringConvertible, Equatable {
    case verificationFailed(path: String, expected: String, actual: String)
    case sizeMismatch(path: String, expected: Int64, actual: Int64)
    case upstreamChanged(path: String, expected: String, served: String)
    case cannotWrite(path: String, reason: String)
    case diskFull(path: String)
    case outsideFolders(path: String, reason: String)
    case badContent(path: String, source: String, reason: String)
    case sourceVanished(path: String, source: String)
    case crossDevice(path: String, source: String)
    case notEnoughSpace(mountPoint: String, needed: Int64, free: Int64, reserve: Int64)
    case gaveUp(path: String, reason: String)
    /// Failed at once, without retries: trying again cannot help (a 404, a job without a URL).
    case refused(path: String, reason: String)
    case notManaged(path: String)
    case cancelled

    /// A failed system call on `path` in words with advice: a full disk, a read-only filesystem
    /// and missing permissions each need something else from the user.
    static func posix(path: String, code: Int32, doing: String) -> ExecutorError {
        switch code {
        case ENOSPC, EDQUOT: return .diskFull(path: path)
        case EROFS: return .cannotWrite(path: path, reason: "the filesystem is read-only (\(doing) failed); mount it read-write or point ckpts_directory elsewhere")
        case EACCES, EPERM: return .cannotWrite(path: path, reason: "permission denied (\(doing) failed); make the folder writable for this user")
        default: return .cannotWrite(path: path, reason: "\(doing) failed: \(String(cString: strerror(code)))")
        }
    }

    public var description: String {
        switch self {
        case .verificationFailed(let path, let expected, let actual):
            return "\(path): downloaded bytes do not match (expected \(expected.prefix(16))…, got \(actual.prefix(16))…); the partial file was deleted and nothing was placed. Retry with 'wgpm queue retry'; if it repeats, the server or a proxy is altering the file."
        case .sizeMismatch(let path, let expected, let actual):
            return "\(path): the server sent \(formatBytes(actual)) where \(formatBytes(expected)) were expected; nothing was placed."
        case .upstreamChanged(let path, let expected, let served):
            return "\(path): the Hub now serves other content (\(served.prefix(16))… instead of \(expected.prefix(16))…). Run 'wgpm plan --refresh' and apply the new plan."
        case .cannotWrite(let path, let reason):
            return "cannot write \(path): \(reason)."
        case .diskFull(let path):
            return "no space left on the filesystem of \(path); free space there and run 'wgpm queue retry' (the partial file is kept and continues)."
        case .outsideFolders(let path, let reason):
            return "refusing to write \(path): \(reason). Nothing was written."
        case .badContent(let path, let source, let reason):
            return "\(path): \(source) does not hold the expected content (\(reason)); it is not linked and will not be offered again."
        case .sourceVanished(let path, let source):
            return "\(path): the local source \(source) is gone since the plan was made; run 'wgpm plan' again."
        case .crossDevice(let path, let source):
            return "\(path): cannot hardlink \(source) across filesystems; use link_mode symlink or copy."
        case .notEnoughSpace(let mount, let needed, let free, let reserve):
            return "not enough space on \(mount): downloads need \(formatBytes(needed)), \(formatBytes(free)) are free and min_free_gb keeps \(formatBytes(reserve)) in reserve. Free space or lower min_free_gb; nothing was downloaded."
        case .gaveUp(let path, let reason):
            return "\(path): \(reason). 'wgpm queue retry' tries again, from what a partial file holds, if anything."
        case .refused(let path, let reason):
            return "\(path): \(reason)."
        case .notManaged(let path):
            return "\(path): not removed, because wgpm did not create it."
        case .cancelled:
            return "interrupted; partial files are kept and the next apply or worker continues them."
        }
    }
}
