import Foundation
import Planner

/// A file of one of wgpm's own formats (lock, saved plan, recorded inventory) that cannot be used.
///
/// These files cross a trust boundary: a lock is committed by someone else, a saved plan or an
/// inventory is handed over from another machine. So nothing in them is used until all of it
/// has been read and checked, and every bad entry is reported at once.
public struct FormatError: Error, CustomStringConvertible, Equatable {
    public enum Kind: String, Sendable {
        case lock = "lock file", plan = "saved plan", inventory = "recorded inventory"

        /// What to do when the file given is not this kind at all: a manifest given to apply
        /// goes with `-m`.
        func otherFileRemedy(_ path: String) -> String? {
            guard self == .plan, path.hasSuffix(".yaml") || path.hasSuffix(".yml") else { return nil }
            return "Give apply a plan saved with 'wgpm plan -o FILE'; a manifest goes with -m ('wgpm apply -m \(path)')."
        }
    }

    public var file: String
    public var kind: Kind
    /// What is wrong, as the first sentence says it.
    public var reason: String
    /// One line per bad entry, e.g. `files[3]: path 'ckpts/../x' climbs out of its folder`.
    public var entries: [String]
    public var remedy: String
    /// The file is not of this kind at all (a manifest given as a plan): said as such, not as a
    /// broken file of the kind.
    public var otherKind = false

    public init(file: String, kind: Kind, reason: String, entries: [String] = [], remedy: String) {
        self.file = file
        self.kind = kind
        self.reason = reason
        self.entries = entries
        self.remedy = remedy
    }

    /// "it is not a wgpm saved plan (it is not JSON)", with what to give instead.
    static func notThisKind(file: String, kind: Kind, _ what: String, remedy: String) -> FormatError {
        var error = FormatError(file: file, kind: kind, reason: "it is not a wgpm \(kind.rawValue) (\(what))",
                                remedy: kind.otherFileRemedy(file) ?? remedy)
        error.otherKind = true
        return error
    }

    public var description: String {
        if otherKind { return "\(file): \(reason); nothing was planned or enqueued. \(remedy)" }
        let shown = entries.prefix(50).map { "\n  \($0)" }.joined()
        let more = entries.count > 50 ? "\n  … and \(entries.count - 50) more" : ""
        return "\(file): \(reason), so this \(kind.rawValue) cannot be used; nothing was planned or enqueued. \(remedy)\(shown)\(more)"
    }
}

/// Reads a versioned JSON document: the version first, so a file of a newer wgpm is told apart
/// from a broken one, then the whole document.
func decodeVersioned<T: Decodable>(_ type: T.Type, at path: String, kind: FormatError.Kind, version: Int,
                                   remedy: String) throws -> T {
    let data: Data
    do {
        data = try Data(contentsOf: URL(fileURLWithPath: path))
    } catch {
        let reason = FileManager.default.fileExists(atPath: path) ? "it cannot be read" : "there is no such file"
        throw FormatError(file: path, kind: kind, reason: reason, remedy: remedy)
    }
    let found: VersionOnly
    do {
        found = try JSONDecoder().decode(VersionOnly.self, from: data)
    } catch DecodingError.typeMismatch(_, let ctx) where ctx.codingPath.first?.stringValue == "format_version" {
        throw FormatError(file: path, kind: kind, reason: "its format_version is not a whole number", remedy: remedy)
    } catch {
        // An object cut short or mangled is a broken file of this kind; anything else (a
        // manifest, a text file, a JSON list) is another kind of file.
        if data.first(where: { ![0x20, 0x09, 0x0A, 0x0D].contains($0) }) == UInt8(ascii: "{") {
            throw FormatError(file: path, kind: kind, reason: "it is broken JSON (cut short, or edited by hand)", remedy: remedy)
        }
        let what = (try? JSONSerialization.jsonObject(with: data, options: [.fragmentsAllowed])) == nil ? "it is not JSON" : "its top level is not a JSON object"
        throw FormatError.notThisKind(file: path, kind: kind, what, remedy: remedy)
    }
    guard let v = found.format_version else {
        throw FormatError.notThisKind(file: path, kind: kind, "a JSON object without format_version", remedy: remedy)
    }
    guard v == version else {
        throw FormatError(file: path, kind: kind,
                          reason: "its format_version is \(v), and this wgpm reads only format_version \(version)",
                          remedy: "Use the wgpm that wrote it, or " + remedy.prefix(1).lowercased() + remedy.dropFirst())
    }
    do {
        return try JSONDecoder().decode(T.self, from: data)
    } catch {
        throw FormatError(file: path, kind: kind, reason: "it does not have the shape of format_version \(version) (\(decodingMessage(error)))",
                          remedy: remedy)
    }
}

private struct VersionOnly: Decodable { var format_version: Int? }

/// "files[2].size: expected a number" rather than Foundation's debug dump.
func decodingMessage(_ error: Error) -> String {
    func at(_ path: [CodingKey]) -> String {
        var text = ""
        for key in path {
            if let i = key.intValue { text += "[\(i)]" } else { text += (text.isEmpty ? "" : ".") + key.stringValue }
        }
        return text.isEmpty ? "the top level" : text
    }
    switch error as? DecodingError {
    case .keyNotFound(let key, let ctx)?: return "\(at(ctx.codingPath + [key])) is missing"
    case .typeMismatch(let type, let ctx)?: return "\(at(ctx.codingPath)) is not \(describeType(type))"
    case .valueNotFound(let type, let ctx)?: return "\(at(ctx.codingPath)) is null, not \(describeType(type))"
    case .dataCorrupted(let ctx)?:
        let underlying = (ctx.underlyingError as NSError?)?.userInfo[NSDebugDescriptionErrorKey] as? String
        return ctx.codingPath.isEmpty ? (underlying ?? ctx.debugDescription) : "\(at(ctx.codingPath)): \(ctx.debugDescription)"
    default: return "\(error)"
    }
}

private func describeType(_ type: Any.Type) -> String {
    switch type {
    case is String.Type: return "a string"
    case is Bool.Type: return "true or false"
    case is Int.Type, is Int64.Type: return "a whole number"
    case is [Any].Type: return "a list"
    default: return "of the expected type"
    }
}

/// Collects the problems of a document's entries; empty when every entry is acceptable.
struct EntryProblems {
    var lines: [String] = []

    /// Checks a path with the one confinement rule. The rule's message names the path.
    mutating func path(_ path: String, at entry: String) {
        if let problem = confinementProblem(path) { lines.append("\(entry): \(problem)") }
    }

    mutating func add(_ entry: String, path: String, _ problem: String) {
        lines.append("\(entry) '\(shown(path))': \(problem)")
    }
}

/// A path as it may be printed: control characters would reach the terminal.
func shown(_ text: String) -> String {
    String(String.UnicodeScalarView(text.unicodeScalars.map { $0.value < 0x20 || $0.value == 0x7F ? "?" : $0 }))
}

func isHex(_ text: String, count: Int) -> Bool {
    text.utf8.count == count && text.utf8.allSatisfy { (0x30...0x39).contains($0) || (0x61...0x66).contains($0) }
}

/// Plain http(s) and nothing a terminal or a request line would misread.
func isHTTPURL(_ text: String) -> Bool {
    let lower = text.lowercased()
    return (lower.hasPrefix("https://") || lower.hasPrefix("http://"))
        && !text.unicodeScalars.contains { $0.value < 0x20 || $0.value == 0x7F }
}

/// A format file could not be written; whatever was there before is left as it was.
public struct WriteError: Error, CustomStringConvertible {
    public var path: String
    public var reason: String
    public var description: String { "cannot write \(path): \(reason). Check that its folder exists, is writable and has space." }
}

/// Writes by way of a temporary file in the same folder renamed into place, so a reader sees
/// the old file or the new one, never half of one.
public func writeAtomically(_ text: String, to path: String) throws {
    let url = URL(fileURLWithPath: path)
    let tmp = url.deletingLastPathComponent().appendingPathComponent(".\(url.lastPathComponent).tmp-\(getpid())")
    do {
        try Data(text.utf8).write(to: tmp)
    } catch {
        throw WriteError(path: path, reason: plainText(of: error, withPath: false))
    }
    if rename(tmp.path, url.path) != 0 {
        let reason = String(cString: strerror(errno))
        try? FileManager.default.removeItem(at: tmp)
        throw WriteError(path: path, reason: reason)
    }
}
