import Foundation
import Testing
import TestSupport

/// Faults of the machine rather than of the network: a file wgpm cannot read, a source database
/// another program keeps locked, a state directory it cannot write, content that is not what
/// its name says.

/// Tests run as root, where file modes do not stop reads; these run wgpm as `nobody` instead.
let canDropPrivileges = getuid() == 0 && FileManager.default.isExecutableFile(atPath: "/usr/bin/setpriv")

/// Runs wgpm as uid/gid 65534 (nobody) in `cwd`.
func wgpmAsNobody(_ args: [String], cwd: String, env: [String: String]) throws -> RunResult {
    try run("/usr/bin/setpriv", ["--reuid=65534", "--regid=65534", "--clear-groups", wgpm] + args, environment: env, cwd: cwd)
}

/// Gives a folder tree to nobody, as a normal user's own Wan2GP folder would be.
func giveToNobody(_ path: String) throws {
    let r = try run("/bin/chown", ["-R", "65534:65534", path])
    #expect(r.status == 0, "\(r.stderr)")
}

/// A folder with a config and a manifest, and no fake Hub: for runs that never ask the Hub.
func offlineMachine(manifest: String, config extra: String = "") throws -> TempDir {
    let dir = try TempDir("e2e-offline")
    try dir.write("config.yaml", """
        wan2gp_directory: \(wan2gpFixture)
        ckpts_directory: ckpts
        loras_directory: loras
        state_directory: state

        """ + extra)
    try dir.write("wgpm.yaml", manifest)
    return dir
}

@Test(.enabled(if: canDropPrivileges))
func anUnreadableFileInCkptsIsReportedWhileTheRestIsPlannedAndApplied() throws {
    let m = try Machine(manifest: "version: 1\nmodels: [t2v]\n")
    let vae = "ckpts/Wan2.1_VAE.safetensors"
    try m.place(vae, from: "DeepBeepMeep/Wan2.1/Wan2.1_VAE.safetensors")
    try giveToNobody(m.dir.path)
    // What a `sudo wgpm apply` (or a root-run Wan2GP) leaves behind.
    #expect(chown(m.dir.file(vae), 0, 0) == 0 && chmod(m.dir.file(vae), 0o600) == 0)
    let env = ["HF_ENDPOINT": m.hub.hubURL, "HOME": m.dir.path, "NO_COLOR": "1"]

    let plan = try wgpmAsNobody(["plan", "--json"], cwd: m.dir.path, env: env)
    #expect(plan.status == 0, "the plan is made: \(plan.stderr)")
    let json = try JSONSerialization.jsonObject(with: Data(plan.stdout.utf8)) as? [String: Any] ?? [:]
    let list = actions(json)
    let conflict = try #require(list.first { $0["path"] as? String == vae })
    #expect(conflict["action"] as? String == "conflict")
    #expect(conflict["reason"] as? String == "cannot read: permission denied; not touched — fix its owner or permissions")
    let others = list.filter { $0["path"] as? String != vae }
    #expect(others.count == 36 && others.allSatisfy { $0["action"] as? String == "download" }, "\(others.count)")

    let applied = try wgpmAsNobody(["apply", "--yes"], cwd: m.dir.path, env: env)
    #expect(applied.status == 1, "a conflict was left: \(applied.stdout) \(applied.stderr)")
    #expect(applied.warnings.contains("wgpm: warning: conflict left as it is: \(vae) (cannot read: permission denied; not touched — fix its owner or permissions)"),
            "\(applied.stderr)")
    #expect(applied.stdout.contains("Applied: 36 done, 0 failed"), "\(applied.stdout)")
    let after = try wgpmAsNobody(["plan", "--json"], cwd: m.dir.path, env: env)
    let rest = actions((try JSONSerialization.jsonObject(with: Data(after.stdout.utf8)) as? [String: Any]) ?? [:])
    #expect(rest.map { "\($0["action"] ?? "") \($0["path"] ?? "")" } == ["conflict \(vae)"], "only the unreadable file is left")
    var st = stat()
    #expect(stat(m.dir.file(vae), &st) == 0 && st.st_uid == 0 && st.st_mode & 0o777 == 0o600, "not touched")
}

@Test(.enabled(if: canDropPrivileges))
func aStateDirectoryWgpmCannotWriteSaysWhichWhyAndWhatToDo() throws {
    let dir = try offlineMachine(manifest: offlineManifest)
    defer { dir.remove() }
    try giveToNobody(dir.path)
    let rootOwned = dir.file("rootstate")
    try FileManager.default.createDirectory(atPath: rootOwned, withIntermediateDirectories: true)  // root's, mode 755
    let env = ["HOME": dir.path]
    for (state, expected) in [
        ("rootstate", "cannot use the state directory \(rootOwned): permission denied. Set state_directory in the config to a writable folder on a local disk, or fix the owner or permissions of \(rootOwned)."),
        ("rootstate/wgpm", "cannot create the state directory \(rootOwned)/wgpm: permission denied (creating it in \(rootOwned)). Set state_directory"),
    ] {
        try dir.write("config.yaml", """
            wan2gp_directory: \(wan2gpFixture)
            ckpts_directory: ckpts
            loras_directory: loras
            state_directory: \(state)
            """)
        let r = try wgpmAsNobody(["plan"], cwd: dir.path, env: env)
        #expect(r.status == 1)
        #expect(r.stderr.contains(expected), "\(r.stderr)")
        #expect(!r.stderr.contains("Error Domain") && !r.stderr.contains("unable to open database file"), "\(r.stderr)")
    }
    // A database file left by a root run (the folder itself is the user's).
    try FileManager.default.createDirectory(atPath: dir.file("state"), withIntermediateDirectories: true)
    try giveToNobody(dir.file("state"))
    try dir.write("config.yaml", "wan2gp_directory: \(wan2gpFixture)\nstate_directory: state\n")
    #expect(try run(wgpm, ["plan"], environment: env, cwd: dir.path).status == 0, "root makes the database")
    #expect(chmod(dir.file("state/state.sqlite"), 0o600) == 0)
    let r = try wgpmAsNobody(["plan"], cwd: dir.path, env: env)
    #expect(r.status == 1)
    #expect(r.stderr.contains("cannot use the state database file \(dir.file("state/state.sqlite")): permission denied."), "\(r.stderr)")
}

@Test func aLockedInvokeAIDatabaseMakesThePlanWaitThenFailUnlessToldToSkipIt() throws {
    let m = try Machine(manifest: "version: 1\nmodels: [t2v]\n")
    // InvokeAI holds the VAE under its own key; its row states the file's sha256.
    let vae = try Data(contentsOf: URL(fileURLWithPath: m.hub.root + "/DeepBeepMeep/Wan2.1/Wan2.1_VAE.safetensors"))
    let key = "c2add694-bf94-4dc7-bb37-6592d9c862cd"
    let stored = try m.dir.write("invokeai/models/\(key)/Wan2.1_VAE.safetensors", vae)
    let db = m.dir.file("invokeai/databases/invokeai.db")
    try FileManager.default.createDirectory(atPath: m.dir.file("invokeai/databases"), withIntermediateDirectories: true)
    let made = try run("/usr/bin/env", ["python3", "-c", """
        import sqlite3, sys
        c = sqlite3.connect(sys.argv[1])
        c.executescript(open(sys.argv[2]).read())
        c.execute("UPDATE models SET config = json_set(config, '$.path', ?, '$.hash', ?, '$.file_size', ?) WHERE id = ?",
                  (sys.argv[3] + "/Wan2.1_VAE.safetensors", "sha256:" + sys.argv[4], int(sys.argv[5]), sys.argv[3]))
        c.commit()
        """, db, repositoryRoot + "/fixtures/invokeai-schema.sql", key, sha256Hex(vae), "\(vae.count)"])
    #expect(made.status == 0, "\(made.stderr)")
    let source = "sources:\n  - invokeai: { db: invokeai/databases/invokeai.db, models_dir: invokeai/models }\n"
    try m.writeConfig(source + "source_lock_timeout: 2\n")
    let holder = try DatabaseLockHolder(database: db)

    let started = Date()
    let locked = try m.wgpmRun(["plan"])
    #expect(Date().timeIntervalSince(started) < 30)
    #expect(locked.status == 1, "\(locked.stdout)")
    #expect(locked.stderr.contains("wgpm: waiting for InvokeAI's database \(db): another program holds a lock on it"), "\(locked.stderr)")
    #expect(locked.stderr.contains("InvokeAI's database \(db) is locked by another program (InvokeAI writing to it?) and stayed locked for"), "\(locked.stderr)")
    #expect(locked.stderr.contains("Close InvokeAI or wait for it to finish and run again, or set when_source_locked: skip"))
    #expect(!locked.stdout.contains("download"), "no plan is shown")

    // Told to skip it: the plan goes on without it, and says so.
    try m.writeConfig(source + "source_lock_timeout: 1\nwhen_source_locked: skip\n")
    let skipped = try m.wgpmRun(["plan", "--json"])
    #expect(skipped.status == 0, "\(skipped.stderr)")
    #expect(skipped.warnings.contains("stayed locked by another program") && skipped.warnings.contains("skipped (when_source_locked: skip)"), "\(skipped.stderr)")
    let vaeAction = actions((try JSONSerialization.jsonObject(with: Data(skipped.stdout.utf8)) as? [String: Any]) ?? [:])
        .first { $0["path"] as? String == "ckpts/Wan2.1_VAE.safetensors" }
    #expect(vaeAction?["action"] as? String == "download")

    // Once InvokeAI lets go, its copy is linked.
    holder.release()
    try m.writeConfig(source)
    let free = try m.wgpmRun(["plan", "--json"])
    #expect(free.status == 0, "\(free.stderr)")
    let linked = actions((try JSONSerialization.jsonObject(with: Data(free.stdout.utf8)) as? [String: Any]) ?? [:])
        .first { $0["path"] as? String == "ckpts/Wan2.1_VAE.safetensors" }
    #expect(linked?["action"] as? String == "link")
    #expect((linked?["fetch"] as? [String: Any])?["from"] as? String == stored)
}

@Test func aSourceLockSettingWithATypoGetsASuggestion() throws {
    let dir = try offlineMachine(manifest: offlineManifest, config: "when_source_locked: skp\nsource_lock_timout: 5\n")
    defer { dir.remove() }
    let r = try run(wgpm, ["plan"], environment: ["HOME": dir.path], cwd: dir.path)
    #expect(r.status == 1)
    #expect(r.stderr.contains("when_source_locked is 'skp'; it must be one of fail, skip; did you mean skip?"), "\(r.stderr)")
    #expect(r.stderr.contains("source_lock_timout") && r.stderr.contains("did you mean source_lock_timeout?"), "\(r.stderr)")
}

/// One file from a host that publishes no hash: planning it needs no network.
let offlineManifest = """
    version: 1
    models: []
    files:
      - url: https://civitai.example/api/download/models/4711/x.safetensors
        path: loras/x.safetensors
    """

@Test func anHTMLPageSavedAsAModelIsReplaced() throws {
    let dir = try offlineMachine(manifest: offlineManifest)
    defer { dir.remove() }
    // What a download without the right cookie saves: a login page, under the model's name.
    try dir.write("loras/x.safetensors", "<!DOCTYPE html>\n<html><head><title>Sign in</title></head><body>Log in to download</body></html>\n")
    let r = try run(wgpm, ["plan", "--detailed-exitcode"], environment: ["HOME": dir.path, "NO_COLOR": "1"], cwd: dir.path)
    #expect(r.status == 2, "changes present: \(r.stdout) \(r.stderr)")
    #expect(r.stdout.contains("~ replace   loras/x.safetensors"), "\(r.stdout)")
    #expect(r.stdout.contains("(it is an HTML page, not a .safetensors file; download)"), "\(r.stdout)")
    #expect(!r.stdout.contains("No changes"))
    // A real safetensors start is accepted as before: there is no hash to say more.
    var real = Data([2, 0, 0, 0, 0, 0, 0, 0]) + Data("{}".utf8)
    real += Data(repeating: 0, count: 100)
    try dir.write("loras/x.safetensors", real)
    let ok = try run(wgpm, ["plan", "--detailed-exitcode"], environment: ["HOME": dir.path, "NO_COLOR": "1"], cwd: dir.path)
    #expect(ok.status == 0, "\(ok.stdout) \(ok.stderr)")
}


/// `wgpm index update` names a source file it cannot read instead of skipping it silently.
@Test(.enabled(if: canDropPrivileges))
func indexUpdateNamesAnUnreadableSourceFile() throws {
    let dir = try offlineMachine(manifest: "version: 1\nmodels: []\n", config: "sources:\n  - directory: store\n")
    defer { dir.remove() }
    try dir.write("store/ok.safetensors", withSafetensorsStart(Data(repeating: 1, count: 100)))
    let secret = try dir.write("store/root-only.safetensors", withSafetensorsStart(Data(repeating: 2, count: 100)))
    try giveToNobody(dir.path)
    #expect(chown(secret, 0, 0) == 0 && chmod(secret, 0o600) == 0)
    let r = try wgpmAsNobody(["index", "update"], cwd: dir.path, env: ["HOME": dir.path])
    #expect(r.status == 0, "\(r.stderr)")
    #expect(r.stderr.contains("root-only.safetensors"), "\(r.stderr)")
    #expect(r.stdout.contains("Hashed 1 file"), "\(r.stdout)")
}

/// A plan that cannot start (no config, no lock) says so and leaves no state database behind.
@Test func aPlanWithoutConfigCreatesNoState() throws {
    let dir = try TempDir("e2e-noconfig")
    defer { dir.remove() }
    try dir.write("wgpm.yaml", "version: 1\nmodels:\n  - t2v\n")
    let r = try run(wgpm, ["plan"], environment: ["HOME": dir.path, "NO_COLOR": "1"], cwd: dir.path)
    #expect(r.status == 1)
    #expect(r.stderr.contains("no config file found"), "\(r.stderr)")
    #expect(!FileManager.default.fileExists(atPath: dir.file(".local/state/wgpm")), "no state folder or database was made")
}
