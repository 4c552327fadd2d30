import Foundation
import Testing
import TestSupport

@Test func planLinksContentFoundInLocalSourcesAndApplyPlacesIt() throws {
    let m = try Machine(manifest: "version: 1\nmodels: [t2v]\n")
    let hubVAE = m.hub.root + "/DeepBeepMeep/Wan2.1/Wan2.1_VAE.safetensors"
    let hubTE = m.hub.root + "/DeepBeepMeep/Wan2.1/umt5-xxl/models_t5_umt5-xxl-enc-quanto_int8.safetensors"
    // A plain folder with the VAE under another name, and an HF cache holding the text encoder.
    try m.dir.write("store/renamed-vae.bin", try Data(contentsOf: URL(fileURLWithPath: hubVAE)))
    let te = try Data(contentsOf: URL(fileURLWithPath: hubTE))
    let teSHA = sha256Hex(te)
    try m.dir.write("hf/hub/models--DeepBeepMeep--Wan2.1/blobs/\(teSHA)", te)
    try m.writeConfig("""
        link_mode: symlink
        sources:
          - hf_cache: auto
          - directory: store
        """)
    let env = ["HF_HOME": m.dir.file("hf")]
    let r = try m.wgpmRun(["plan", "--json"], env: env)
    #expect(r.status == 0, "\(r.stderr)")
    let json = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any] ?? [:]
    let actions = (json["actions"] as? [[String: Any]]) ?? []
    let byPath = Dictionary(uniqueKeysWithValues: actions.map { ($0["path"] as! String, $0) })
    let vae = try #require(byPath["ckpts/Wan2.1_VAE.safetensors"])
    #expect(vae["action"] as? String == "link")
    #expect((vae["fetch"] as? [String: Any])?["basis"] as? String == "sha256")
    #expect((vae["fetch"] as? [String: Any])?["from"] as? String == m.dir.file("store/renamed-vae.bin"))
    let teAction = try #require(byPath["ckpts/umt5-xxl/models_t5_umt5-xxl-enc-quanto_int8.safetensors"])
    #expect((teAction["fetch"] as? [String: Any])?["source"] as? String == "hf_cache")
    let stats = json["stats"] as? [String: Any] ?? [:]
    #expect(stats["source_files_hashed"] as? Int == 1, "only the folder file of a wanted size is hashed; the HF blob is known by name")
    #expect((json["summary"] as? [String: Any])?["reused_bytes"] as? Int ?? 0 > 0)
    let human = try m.wgpmRun(["plan"], env: env.merging(["NO_COLOR": "1"]) { $1 })
    #expect(human.stdout.contains("+ link      ckpts/Wan2.1_VAE.safetensors"))
    #expect(human.stdout.contains("2 to link"))

    let applied = try m.wgpmRun(["apply", "--yes"], env: env)
    #expect(applied.status == 0, "\(applied.stderr)")
    #expect(try FileManager.default.destinationOfSymbolicLink(atPath: m.dir.file("ckpts/Wan2.1_VAE.safetensors")) == m.dir.file("store/renamed-vae.bin"))
    #expect(try m.wgpmRun(["plan", "--detailed-exitcode"], env: env).status == 0)
    let cdn = m.hub.requests().filter { $0.listener == "cdn" && ($0.path.contains(teSHA)) }
    #expect(cdn.isEmpty, "the reused file was never downloaded")

    let index = try m.wgpmRun(["index", "status", "--json"], env: env)
    let status = try JSONSerialization.jsonObject(with: Data(index.stdout.utf8)) as? [String: Any] ?? [:]
    #expect(status["files"] as? Int == 2)
}

@Test func aSourceThatVanishesBeforeApplyIsAClearError() throws {
    let m = try Machine(manifest: "version: 1\nmodels: [t2v]\n")
    let hubVAE = m.hub.root + "/DeepBeepMeep/Wan2.1/Wan2.1_VAE.safetensors"
    try m.dir.write("store/vae.bin", try Data(contentsOf: URL(fileURLWithPath: hubVAE)))
    try m.writeConfig("""
        sources:
          - directory: store
        """)
    #expect(try m.wgpmRun(["plan", "-o", "plan.json"]).status == 0)
    try FileManager.default.removeItem(atPath: m.dir.file("store/vae.bin"))
    let r = try m.wgpmRun(["apply", "plan.json"])
    #expect(r.status == 1)
    #expect(r.stderr.contains("plan.json is stale: ckpts/Wan2.1_VAE.safetensors would now be download instead of link from \(m.dir.file("store/vae.bin"))"), "\(r.stderr)")
    #expect(!FileManager.default.fileExists(atPath: m.dir.file("ckpts")), "nothing applied: the reviewed plan said link, not download")
    let again = try m.wgpmRun(["plan", "--json"])
    #expect(again.stdout.contains("\"path\" : \"ckpts/Wan2.1_VAE.safetensors\""), "the next plan downloads it instead")
}
