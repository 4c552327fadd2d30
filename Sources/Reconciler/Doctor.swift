import Catalog
import Foundation
import HubClient
import Inventory
import Manifest
import Planner
import Reuse
import State
#if canImport(Glibc)
import Glibc
#endif

/// One line of `wgpm doctor`: what was checked, whether it is fine, and what to do if not.
public struct Check: Sendable {
    /// `skip`: not checked, because what it needs (the config) is broken.
    public enum Status: String, Sendable { case ok, warn, fail, skip }
    public var status: Status
    public var subject: String
    public var detail: String
}

extension Reconciler {
    /// Checks config, paths, the Wan2GP directory, databases, the Hub and its token (never
    /// shown), link support per filesystem and free space. Changes nothing but temporary probes.
    ///
    /// `configProblem`: the config could not be read (this reconciler then holds the fallback
    /// settings). It is the first failure; the Hub is still checked with the environment's
    /// endpoint and token, and every check that needs the config's values says it was skipped.
    /// `usableAnyway`: the config's good lines were read (a bad setting keeps its default), so
    /// the other checks run with them.
    public func diagnose(configProblem: String? = nil, usableAnyway: Bool = false) -> [Check] {
        var checks: [Check] = []
        func add(_ s: Check.Status, _ subject: String, _ detail: String) { checks.append(Check(status: s, subject: subject, detail: detail)) }
        if let configProblem, usableAnyway {
            add(.fail, "config", configProblem + "\n  (the checks below use the config's other lines)")
        } else if let configProblem {
            add(.fail, "config", configProblem)
            let skipped = "not checked: the config above could not be read"
            for subject in ["wan2gp_directory", "wan2gp_version", "ckpts_directory", "loras_directory", "state_directory", "sources"] {
                add(.skip, subject, skipped)
            }
            checkHub(add)
            add(.skip, "links", skipped)
            add(.skip, "free space", skipped)
            return checks
        }
        if configProblem == nil { add(.ok, "config", config.file.map { "read \($0)" } ?? "no config file; defaults in use") }

        var legacyLoraFolders: [String] = []
        do {
            let catalog = try loadCatalog()
            legacyLoraFolders = catalog.support.legacyLoraFolders
            add(catalog.warnings.isEmpty ? .ok : .warn, "wan2gp_directory",
                "\(config.wan2gpDirectory): \(catalog.models.count) model definitions" + (catalog.warnings.isEmpty ? "" : "; \(counted(catalog.warnings.count, "warning")): \(catalog.warnings[0])"))
            if let selection = catalog.selection {
                // Unknown or edited: every plan computes files from another version's knowledge.
                add(selection.warning == nil ? .ok : .warn, "wan2gp_version",
                    selection.warning ?? selection.summary)
            }
        } catch {
            add(.fail, "wan2gp_directory", "\(error)")
            add(.skip, "wan2gp_version", "not checked: the Wan2GP directory above could not be read")
        }

        for (name, dir) in [("ckpts_directory", config.ckptsDirectory), ("loras_directory", config.lorasDirectory)] {
            var isDir: ObjCBool = false
            if !FileManager.default.fileExists(atPath: dir, isDirectory: &isDir) {
                add(.warn, name, "\(dir) does not exist yet; apply creates it")
            } else if !isDir.boolValue {
                add(.fail, name, "\(dir) is not a folder; fix \(name) in the config")
            } else if access(dir, W_OK) != 0 {
                add(.fail, name, "\(dir) is not writable (\(String(cString: strerror(errno)).lowercased())); apply could not place files")
            } else {
                // Said when Wan2GP's own wgp_config.json chose it: that is not obvious.
                let origin = config.folderOrigins[name == "ckpts_directory" ? "ckpts" : "loras"]
                add(.ok, name, dir + (origin.map { $0.contains("wgp_config.json") ? " (\($0))" : "" } ?? ""))
            }
        }
        if !legacyLoraFolders.isEmpty {
            // Not obvious either: these land beside the LoRA folder, not in it.
            let parent = mapper.directory(ofRoot: legacyLoraFolders[0]).map { ($0 as NSString).deletingLastPathComponent } ?? ""
            add(.ok, "lora_folders", "this Wan2GP keeps its LoRAs in root-level folders (before 2025-11-28): "
                + legacyLoraFolders.joined(separator: ", ") + " in \(parent)")
        }
        if let problem = config.folderOrigins["problem"] {
            add(.warn, "wgp_config.json", problem)
        }

        if let type = filesystemType(of: config.stateDirectory),
           ["nfs", "nfs4", "cifs", "smb3", "smbfs", "fuse.sshfs", "lustre", "gpfs", "ceph", "glusterfs"].contains(type) {
            add(.warn, "state_directory", "\(config.stateDirectory) is on a network filesystem; SQLite locking and WAL are not safe there: use a local disk")
        } else {
            do {
                try state.open()
                add(.ok, "state_directory", "\(state.path) opens")
            } catch {
                add(.fail, "state_directory", "\(error)")
            }
        }

        for source in config.sources {
            switch source {
            case .invokeai(let db, let models):
                var problems: [InvokeAISource.Problem] = []
                let rows = InvokeAISource(database: db, modelsDirectory: models).readRows(problem: { problems.append($0) })
                if let rows { add(.ok, "invokeai", "\(db): \(counted(rows.count, "model")) readable (read-only)") }
                else { add(.fail, "invokeai", problems.first?.doctorLine ?? "cannot read \(db)") }
                if !FileManager.default.fileExists(atPath: models) { add(.fail, "invokeai", "models_dir \(models) does not exist; fix sources.invokeai.models_dir") }
            case .hfCache(let root):
                add(FileManager.default.fileExists(atPath: root) ? .ok : .warn, "hf_cache", FileManager.default.fileExists(atPath: root) ? root : "\(root) does not exist; nothing to reuse from it")
            case .directory(let root):
                add(FileManager.default.fileExists(atPath: root) ? .ok : .fail, "directory", FileManager.default.fileExists(atPath: root) ? root : "\(root) does not exist; fix or remove this source")
            }
        }

        checkHub(add)

        // Link support on the ckpts filesystem, and hardlinks from each source.
        let probeDir = FileManager.default.fileExists(atPath: config.ckptsDirectory) ? config.ckptsDirectory : config.stateDirectory
        let base = probeDir + "/.wgpm-doctor-\(getpid())"
        if FileManager.default.createFile(atPath: base, contents: Data("probe".utf8)) {
            let sym = symlink(base, base + ".sym") == 0
            let hard = link(base, base + ".hard") == 0
            unlink(base + ".sym"); unlink(base + ".hard"); unlink(base)
            // Without the link kind the config asks for, every reuse would fail: not a warning.
            let usable = config.linkMode.rawValue == "copy" || (config.linkMode.rawValue == "hardlink" ? hard : sym)
            add(usable ? .ok : .fail, "links", "\(probeDir): symlink \(sym ? "ok" : "not supported"), hardlink \(hard ? "ok" : "not supported")"
                + (usable ? "" : "; set link_mode: copy in the config"))
        } else {
            add(.warn, "links", "cannot create a probe file in \(probeDir)")
        }
        let ckptsFS = context.fileSystem.filesystem(of: config.ckptsDirectory)
        for case .directory(let root) in config.sources {
            if let fs = context.fileSystem.filesystem(of: root), let target = ckptsFS, config.linkMode.rawValue == "hardlink", fs.id != target.id {
                add(.warn, "links", "\(root) is on another filesystem than ckpts/: hardlinks fall back to copies")
            }
        }

        // Free space against min_free_gb.
        var seen: Set<String> = []
        for dir in [config.ckptsDirectory, config.lorasDirectory, config.stateDirectory] {
            guard let fs = context.fileSystem.filesystem(of: dir), seen.insert(fs.id).inserted else { continue }
            let reserve = config.minFreeBytes
            let gb = String(format: "%.1f GB", Double(fs.freeBytes) / 1e9)
            // Below the reserve apply refuses every download: a failure, not a warning.
            add(fs.freeBytes > reserve ? .ok : .fail, "free space", "\(fs.mountPoint): \(gb) free" + (fs.freeBytes > reserve ? "" : ", below min_free_gb \(config.minFreeGB): apply will refuse to download; free space or lower min_free_gb"))
        }
        return checks
    }

    /// The Hub: reachable, and the token (if any) accepted. The token itself is never shown.
    private func checkHub(_ add: (Check.Status, String, String) -> Void) {
        let probe = HubClient(endpoint: config.hubEndpoint, token: config.token, transport: context.transport,
                              sleeper: context.sleeper, maxAttempts: 1)
        let tokenNote = config.token == nil ? "no token (public repos only)" : "a token is configured"
        do {
            _ = try probe.resolveCommit(HubReference(repo: "DeepBeepMeep/Wan2.1", revision: "main", path: ""))
            add(.ok, "hub", "\(config.hubEndpoint) answers; \(tokenNote)")
        } catch HubError.invalidToken {
            add(.fail, "hub", "\(config.hubEndpoint) rejected the token; check \(config.tokenEnv) or $HF_HOME/token")
        } catch {
            add(.fail, "hub", "\(error)")
        }
    }
}

/// The filesystem type of the mount that holds `path`, from /proc/self/mounts.
func filesystemType(of path: String) -> String? {
    guard let text = try? String(contentsOfFile: "/proc/self/mounts", encoding: .utf8) else { return nil }
    var best: (String, String)?
    for line in text.split(separator: "\n") {
        let f = line.split(separator: " ")
        guard f.count >= 3 else { continue }
        let mount = String(f[1]).replacingOccurrences(of: "\\040", with: " ")
        let inside = path == mount || path.hasPrefix(mount.hasSuffix("/") ? mount : mount + "/")
        if inside, mount.count >= (best?.0.count ?? -1) { best = (mount, String(f[2])) }
    }
    return best?.1
}
