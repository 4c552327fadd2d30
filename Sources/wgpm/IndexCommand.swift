import ArgumentParser
import Foundation
import Synchronization
import Planner
import Reconciler
import Rendering
import Reuse
import State

struct IndexCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "index",
        abstract: "The hash index of local sources (InvokeAI, Hugging Face cache, folders).",
        discussion: "status shows the index; update scans the sources and hashes what is pending; rebuild forgets the index, then updates.")

    enum Verb: String, ExpressibleByArgument, CaseIterable {
        case status, update, rebuild

        var defaultValueDescription: String {
            switch self {
            case .status: "show the index"
            case .update: "scan the sources and hash what is pending"
            case .rebuild: "forget the index, then update"
            }
        }
    }

    @OptionGroup var configOptions: ConfigOptions

    @Argument(help: "What to do.")
    var verb: Verb = .status

    @Flag(help: "Print JSON (format_version 1).")
    var json = false

    func run() throws {
        let reconciler = try configOptions.reconciler()
        let index = reconciler.hashIndex()
        if reconciler.config.sources.isEmpty {
            printWarning("no sources are configured; add 'sources:' to the config (see config.yaml.example).")
        }
        switch verb {
        case .status:
            break
        case .update, .rebuild:
            if verb == .rebuild { try reconciler.state.clearIndex() }
            _ = try index.sync(warn: { printWarning($0) })
            let bar = HashProgress(terminal: isatty(STDERR_FILENO) == 1 && ProcessInfo.processInfo.environment["CI"] == nil)
            var unreadable: [String] = []
            let stats = try index.hashPending(progress: { done, total in bar.show(done, total) }, warn: { unreadable.append($0) })
            bar.finish()
            for warning in unreadable { printWarning(warning) }
            if !json { print("Hashed \(counted(stats.filesHashed, "file")), \(formatBytes(stats.bytesHashed)).") }
        }
        let files = try reconciler.state.indexedFilesAll()
        let total = IndexCounts(files)
        let perSource = Dictionary(grouping: files, by: \.source).map { ($0.key, IndexCounts($0.value)) }.sorted { $0.0 < $1.0 }
        if json {
            var object = total.json
            object["format_version"] = 1
            object["sources"] = perSource.map { name, c in c.json.merging(["source": name]) { a, _ in a } }
            print(try renderJSON(object), terminator: "")
            return
        }
        for (name, c) in perSource { print("  \(name): \(c.text)") }
        print("Index: \(total.text).")
    }
}

/// Files, hashed, pending and bytes of a set of indexed files.
struct IndexCounts {
    var files: Int
    var hashed: Int
    var bytes: Int64

    init(_ list: [IndexedFile]) {
        files = list.count
        hashed = list.filter { $0.sha256 != nil || $0.gitSHA1 != nil }.count
        bytes = list.reduce(0) { $0 + $1.stamp.size }
    }

    var json: [String: Any] { ["files": files, "hashed": hashed, "pending": files - hashed, "bytes": bytes] }
    var text: String { "\(counted(files, "file")), \(hashed) hashed, \(files - hashed) pending, \(formatBytes(bytes))" }
}

/// A one-line hashing progress bar on a terminal; a line every 10 % elsewhere.
final class HashProgress: Sendable {
    let terminal: Bool
    /// The last tenth reported (off a terminal); also serialises the writes of the hashing threads.
    private let lastTenth = Mutex(-1)
    init(terminal: Bool) { self.terminal = terminal }

    func show(_ done: Int, _ total: Int) {
        lastTenth.withLock { lastTenth in
            if terminal {
                let width = 30
                let filled = total > 0 ? done * width / total : width
                let bar = String(repeating: "#", count: filled) + String(repeating: "-", count: width - filled)
                FileHandle.standardError.write(Data("\r  hashing [\(bar)] \(done)/\(total)".utf8))
            } else {
                let tenth = total > 0 ? done * 10 / total : 10
                if tenth != lastTenth { lastTenth = tenth; printError("hashing: \(done)/\(total) files") }
            }
        }
    }

    func finish() { if terminal { FileHandle.standardError.write(Data("\n".utf8)) } }
}
