import Foundation
import Testing
@testable import Catalog

/// Traces the tracer made of Wan2GP commits (tools/wan2gp_trace/trace.py): what each commit's own
/// code downloads for every model under every setting.
let traceFixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .appendingPathComponent("Fixtures/wan2gp-traces").path

/// The definitions of the earlier commits, one per month (not part of the repository).
func historyDefinitions(_ commit: String) -> String? {
    let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
    let env = ProcessInfo.processInfo.environment["WGPM_WAN2GP_HISTORY"]
    for root in [env, repo + "/../shared/reference/wan2gp/history", "/work/shared/reference/wan2gp/history"].compactMap({ $0 }) {
        let dir = "\(root)/\(commit)"
        if FileManager.default.fileExists(atPath: dir + "/defaults") { return dir }
    }
    return nil
}

let historyCommits = ["0086b850", "18f165e0", "2a07ebca", "6b09af33", "8675eab9", "4dd8dc61", "f7beeb37", "922e823d", "ed94632a"]

func loadTrace(_ name: String) throws -> WanTrace {
    let path = "\(traceFixtures)/\(name).json"
    return try WanTrace.decode(try Data(contentsOf: URL(fileURLWithPath: path)), file: path)
}

@Test(arguments: historyCommits)
func everyModelAndSettingOfAnEarlierCommitEqualsItsOwnCode(_ commit: String) throws {
    let defs = try #require(historyDefinitions(commit), "the definitions of \(commit) are not at ../shared/reference/wan2gp/history (set WGPM_WAN2GP_HISTORY)")
    let trace = try loadTrace(commit)
    // The bundled knowledge the index gives this commit's fingerprint.
    let index = try KnowledgeIndex.bundled()
    let entry = try #require(index.commits.first { $0.fingerprint == trace.fingerprint })
    #expect(entry.knowledge == commit)
    let catalog = try Catalog.load(wan2gpDirectory: defs, support: try Catalog.bundledSupport(try #require(entry.knowledge)))
    let traced = trace.models.keys.filter { trace.errors?[$0] == nil }
    #expect(traced.count >= 90)
    let mismatches = try KnowledgeDerivation.compare(catalog, with: trace)
    #expect(mismatches.isEmpty, "\(mismatches.count) cells differ, first: \(mismatches.prefix(3))")
    // Every traced model of the commit is in the catalog (the same definitions).
    #expect(traced.allSatisfy { catalog.models[$0] != nil })
}

/// The tracer reproduces the table the catalog was checked against at 8681e9f7.
@Test func theTracerReproducesThe8681e9f7Table() throws {
    let trace = try loadTrace("8681e9f7")
    #expect(trace.models.count == 217)
    #expect(trace.errors?.isEmpty ?? true)
    #expect(trace.fingerprint == "9f1abeab45dda1c1099c7ae4198257c9304b5b4a8ff286a5eb5d497118edf46c")
    let mismatches = try KnowledgeDerivation.compare(catalog, with: trace)
    #expect(mismatches.isEmpty, "\(mismatches.count) cells differ, first: \(mismatches.prefix(3))")
}

@Test func versionsDifferWhereTheIssueSaysTheyDo() throws {
    let old = try TracedKnowledge.decode(try bundledResource("0086b850"), file: "0086b850")
    // A frame-interpolation model at the checkpoint root, and the older handler files.
    #expect(old.core.contains { $0.path == "ckpts/flownet.pkl" })
    #expect(old.architectures["t2v"]?.support.contains { $0.path.hasPrefix("ckpts/xlm-roberta-large/") } == true)
    #expect(old.variant_rule != VariantRule.r8681e9f7.rawValue)
    let now = try Catalog.load(wan2gpDirectory: wan2gpFixture, tracedDirectory: nil)
    #expect(try now.expand("t2v", settings: ModelSettings()).allSatisfy { $0.path != "ckpts/flownet.pkl" })
}

@Test func everyIndexedCommitHasKnowledgeThatDecodes() throws {
    let index = try KnowledgeIndex.bundled()
    #expect(index.commits.count >= 26)
    var checked: Set<String> = []
    for entry in index.commits {
        let name = try #require(entry.knowledge)
        #expect(entry.fingerprint.count == 64 && entry.commit.count == 40)
        if checked.insert(name).inserted { _ = try Catalog.bundledSupport(name) }
    }
    // Unique fingerprints: one answer per version.
    #expect(Set(index.commits.map(\.commit)).count == index.commits.count)
}
