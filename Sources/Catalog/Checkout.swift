import Crypto
import Foundation

/// Which Wan2GP a folder holds: its git commit (when it is a work tree), the `WanGP_version` its
/// `wgp.py` declares, and a fingerprint of the sources that decide what Wan2GP downloads.
///
/// The fingerprint recognises a tarball, or a checkout whose `.git` is gone, as a known version,
/// and tells a locally edited checkout from the commit it was taken from. Its definition is shared
/// byte for byte with `tools/wan2gp_trace/fingerprint.py`: the files are `wgp.py`, every
/// `models/**/*_handler.py` and every `shared/utils/**/*.py`; the fingerprint is the hex sha256 of
/// `"<path>\0<hex sha256 of the file>\n"` for each, sorted by path bytes.
public struct CheckoutVersion: Sendable, Hashable, Codable {
    /// The full commit id, when the folder is a git work tree whose HEAD could be read.
    public var commit: String?
    public var wangpVersion: String?
    public var fingerprint: String
    /// How many source files the fingerprint covers (0: not a Wan2GP checkout's code at all).
    public var fingerprintFiles: Int
    /// The same digest over `defaults/*.json` (`"<name>\0<hex sha256>\n"`, sorted): names the
    /// commit a folder of definitions without code was copied from.
    public var definitions: String

    public init(commit: String?, wangpVersion: String?, fingerprint: String, fingerprintFiles: Int, definitions: String) {
        self.commit = commit
        self.wangpVersion = wangpVersion
        self.fingerprint = fingerprint
        self.fingerprintFiles = fingerprintFiles
        self.definitions = definitions
    }

    enum CodingKeys: String, CodingKey {
        case commit, wangpVersion = "wangp_version", fingerprint, fingerprintFiles = "fingerprint_files", definitions
    }

    /// Reads the version of the Wan2GP at `directory`. Never throws: what cannot be read is nil.
    /// Only regular files are read, and only the bytes of the fingerprint's files (a checkout is
    /// another program's folder; a symlink there is followed no further than `stat` would).
    public static func read(_ directory: String) -> CheckoutVersion {
        let files = fingerprintFiles(in: directory)
        let definitions = ((try? FileManager.default.contentsOfDirectory(atPath: (directory as NSString).appendingPathComponent("defaults"))) ?? [])
            .filter { $0.hasSuffix(".json") }.map { "defaults/" + $0 }
            .sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }
        return CheckoutVersion(commit: gitCommit(directory), wangpVersion: wangpVersion(directory),
                               fingerprint: digest(files, in: directory), fingerprintFiles: files.count,
                               definitions: digest(definitions, in: directory))
    }

    /// sha256 over `"<path>\0<hex sha256>\n"` for each regular file of `paths` (sorted).
    static func digest(_ paths: [String], in directory: String) -> String {
        var lines: [UInt8] = []
        for path in paths {
            guard let data = readRegularFile((directory as NSString).appendingPathComponent(path), limit: 64 << 20) else { continue }
            lines += Array(path.utf8) + [0] + Array(hex(SHA256.hash(data: data)).utf8) + [0x0A]
        }
        return hex(SHA256.hash(data: lines))
    }

    /// The fingerprint's files below `directory`, relative with `/`, sorted by their UTF-8 bytes.
    static func fingerprintFiles(in directory: String) -> [String] {
        var out: [String] = []
        if isRegularFile((directory as NSString).appendingPathComponent("wgp.py")) { out.append("wgp.py") }
        out += walk(directory, "models").filter { $0.hasSuffix("_handler.py") }
        out += walk(directory, "shared/utils").filter { $0.hasSuffix(".py") }
        return out.sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }
    }

    /// Regular files below `directory/sub`, relative to `directory`; symlinked folders are not entered.
    private static func walk(_ directory: String, _ sub: String) -> [String] {
        let fm = FileManager.default
        var out: [String] = []
        var pending = [sub]
        while let rel = pending.popLast() {
            let abs = (directory as NSString).appendingPathComponent(rel)
            guard let names = try? fm.contentsOfDirectory(atPath: abs) else { continue }
            for name in names {
                let childRel = rel + "/" + name
                let childAbs = abs + "/" + name
                var st = stat()
                guard lstat(childAbs, &st) == 0 else { continue }
                if (st.st_mode & S_IFMT) == S_IFDIR { pending.append(childRel) }
                else if (st.st_mode & S_IFMT) == S_IFREG { out.append(childRel) }
            }
        }
        return out
    }

    /// `WanGP_version = "12.3456"` at the top level of wgp.py.
    static func wangpVersion(_ directory: String) -> String? {
        guard let data = readRegularFile((directory as NSString).appendingPathComponent("wgp.py"), limit: 64 << 20),
              let text = String(data: data, encoding: .utf8) else { return nil }
        for line in text.split(separator: "\n", omittingEmptySubsequences: true) where line.hasPrefix("WanGP_version") {
            let rest = line.dropFirst("WanGP_version".count).drop { $0 == " " }
            guard rest.first == "=" else { continue }
            let value = rest.dropFirst().trimmingCharacters(in: .whitespaces)
            guard let quote = value.first, quote == "\"" || quote == "'" else { continue }
            let inner = value.dropFirst().prefix { $0 != quote }
            if !inner.isEmpty, inner.count <= 40, inner.allSatisfy({ $0.isLetter || $0.isNumber || ".-_+".contains($0) }) {
                return String(inner)
            }
        }
        return nil
    }

    /// HEAD's commit: `.git/HEAD` holds an id, or `ref: refs/heads/x` found loose or in
    /// `packed-refs`. A `.git` file (worktrees, submodules) points at the real git dir.
    static func gitCommit(_ directory: String) -> String? {
        var gitDir = (directory as NSString).appendingPathComponent(".git")
        if isRegularFile(gitDir), let text = readText(gitDir), text.hasPrefix("gitdir:") {
            let target = text.dropFirst("gitdir:".count).trimmingCharacters(in: .whitespacesAndNewlines)
            gitDir = target.hasPrefix("/") ? target : (directory as NSString).appendingPathComponent(target)
        }
        guard let head = readText(gitDir + "/HEAD")?.trimmingCharacters(in: .whitespacesAndNewlines) else { return nil }
        if isCommitID(head) { return head.lowercased() }
        guard head.hasPrefix("ref:") else { return nil }
        let ref = head.dropFirst(4).trimmingCharacters(in: .whitespaces)
        guard ref.hasPrefix("refs/"), !ref.split(separator: "/").contains("..") else { return nil }
        // A linked worktree keeps its HEAD in its own dir and the refs in the common dir.
        var dirs = [gitDir]
        if let common = readText(gitDir + "/commondir")?.trimmingCharacters(in: .whitespacesAndNewlines) {
            dirs.append(common.hasPrefix("/") ? common : gitDir + "/" + common)
        }
        for dir in dirs {
            if let loose = readText(dir + "/" + ref)?.trimmingCharacters(in: .whitespacesAndNewlines), isCommitID(loose) {
                return loose.lowercased()
            }
            for line in (readText(dir + "/packed-refs") ?? "").split(separator: "\n") {
                let parts = line.split(separator: " ", maxSplits: 1)
                if parts.count == 2, parts[1] == ref, isCommitID(String(parts[0])) { return parts[0].lowercased() }
            }
        }
        return nil
    }

    static func isCommitID(_ s: String) -> Bool {
        s.utf8.count == 40 && s.utf8.allSatisfy { ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x66) || ($0 >= 0x41 && $0 <= 0x46) }
    }
}

func hex<D: Sequence>(_ digest: D) -> String where D.Element == UInt8 {
    digest.map { String(format: "%02x", $0) }.joined()
}

func isRegularFile(_ path: String) -> Bool {
    var st = stat()
    return lstat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFREG
}

/// The bytes of a regular file (not a symlink, FIFO or device) of at most `limit` bytes.
public func readRegularFile(_ path: String, limit: Int) -> Data? {
    guard isRegularFile(path) else { return nil }
    guard let handle = FileHandle(forReadingAtPath: path) else { return nil }
    defer { try? handle.close() }
    // `read(upToCount:)` answers nil at the end of the file: an empty file is empty data.
    guard let read = try? handle.read(upToCount: limit + 1) else { return Data() }
    return read.count <= limit ? read : nil
}

private func readText(_ path: String) -> String? {
    readRegularFile(path, limit: 1 << 20).flatMap { String(data: $0, encoding: .utf8) }
}
