import Foundation

/// The folders Wan2GP's own settings file (`wgp_config.json` in the app root) gives it:
/// `checkpoints_paths` (the first is where Wan2GP downloads; relative paths are relative to
/// the app root, where Wan2GP runs) and `loras_root`.
///
/// Another program's file: read without trusting it. Anything unusable is ignored (Wan2GP
/// falls back to its defaults, `ckpts` and `loras`, in the same cases) and said in `problem`.
public struct Wan2GPServerConfig: Sendable {
    public var file = ""
    public var checkpointsDirectory: String?
    public var lorasDirectory: String?
    public var problem: String?

    public init() {}

    public static func read(wan2gpDirectory dir: String) -> Wan2GPServerConfig {
        var out = Wan2GPServerConfig()
        out.file = (dir as NSString).appendingPathComponent("wgp_config.json")
        var st = stat()
        guard lstat(out.file, &st) == 0 else { return out }
        guard (st.st_mode & S_IFMT) == S_IFREG, st.st_size <= 4 << 20,
              let data = FileManager.default.contents(atPath: out.file) else {
            out.problem = "\(out.file) is not a regular file of at most 4 MiB; ignored"
            return out
        }
        guard let object = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
            out.problem = "\(out.file) is not a JSON object; ignored (Wan2GP would use its defaults too)"
            return out
        }
        func folder(_ value: String) -> String? {
            let trimmed = value.trimmingCharacters(in: .whitespaces)
            guard !trimmed.isEmpty, !trimmed.contains("\0") else { return nil }
            let absolute = trimmed.hasPrefix("/") ? trimmed : (dir as NSString).appendingPathComponent(trimmed)
            let standard = (absolute as NSString).standardizingPath
            // A settings file is not a reason to write into the system's own folders as root.
            let top = standard.split(separator: "/").first.map(String.init) ?? ""
            if standard.split(separator: "/").count < 2 || systemFolders.contains(top) {
                out.problem = "\(out.file) names '\(trimmed)', a system folder; ignored (set ckpts_directory or loras_directory in wgpm's config)"
                return nil
            }
            return standard
        }
        // Wan2GP drops blank entries and falls back to its defaults when none is left.
        if let paths = object["checkpoints_paths"] as? [Any] {
            out.checkpointsDirectory = paths.compactMap { ($0 as? String).flatMap(folder) }.first
        }
        if let root = object["loras_root"] as? String { out.lorasDirectory = folder(root) }
        return out
    }
}

private let systemFolders: Set<String> = ["bin", "boot", "dev", "etc", "lib", "lib32", "lib64", "libx32", "proc", "run", "sbin", "sys", "usr"]
