import Foundation
import Yams
import Catalog

/// One problem in a user-written file, with its position.
public struct Problem: Hashable, Sendable, CustomStringConvertible, Comparable {
    public var file: String
    public var line: Int
    public var column: Int
    public var message: String

    public init(file: String, line: Int, column: Int, message: String) {
        self.file = file
        self.line = line
        self.column = column
        self.message = message
    }

    public var description: String { "\(file):\(line):\(column): \(message)" }

    public static func < (a: Problem, b: Problem) -> Bool {
        (a.file, a.line, a.column, a.message) < (b.file, b.line, b.column, b.message)
    }
}

/// Walks a composed YAML tree and collects every problem instead of stopping at the first.
struct YAMLChecker {
    let file: String
    var problems: [Problem] = []

    init(file: String) { self.file = file }

    /// Parses text into a node tree, or records the syntax error with its position.
    mutating func compose(_ text: String) -> Node? {
        do {
            return try Yams.compose(yaml: text)
        } catch let error as YamlError {
            let (line, column, message) = Self.position(of: error)
            problems.append(Problem(file: file, line: line, column: column, message: "YAML syntax error: \(message)"))
            return nil
        } catch {
            problems.append(Problem(file: file, line: 1, column: 1, message: "cannot read YAML: \(error)"))
            return nil
        }
    }

    static func position(of error: YamlError) -> (Int, Int, String) {
        switch error {
        case .scanner(let context, let problem, let mark, _), .parser(let context, let problem, let mark, _):
            let text = [context?.text, problem].compactMap { $0 }.filter { !$0.isEmpty }.joined(separator: ": ")
            return (mark.line, mark.column, text)
        case .composer(let context, let problem, let mark, _):
            let text = [context?.text, problem].compactMap { $0 }.filter { !$0.isEmpty }.joined(separator: ": ")
            return (mark.line, mark.column, text)
        default:
            return (1, 1, "\(error)")
        }
    }

    mutating func report(_ node: Node?, _ message: String) {
        let mark = node?.mark
        problems.append(Problem(file: file, line: mark?.line ?? 1, column: mark?.column ?? 1, message: message))
    }

    /// The mapping's entries, reporting keys outside `allowed` with a suggestion.
    mutating func mapping(_ node: Node, allowed: [String], context: String) -> [String: Node]? {
        guard let map = node.mapping else {
            report(node, "\(context) must be a mapping of keys to values")
            return nil
        }
        var out: [String: Node] = [:]
        for (keyNode, value) in map {
            guard let key = keyNode.scalar?.string else { report(keyNode, "\(context): keys must be plain names"); continue }
            if out[key] != nil { report(keyNode, "\(context): '\(key)' is given twice") }
            if !allowed.contains(key) {
                let hint = closestWord(to: key, in: allowed).map { "; did you mean \($0)?" } ?? "; allowed: \(allowed.joined(separator: ", "))"
                report(keyNode, "unknown key '\(key)' in \(context)\(hint)")
                continue
            }
            out[key] = value
        }
        return out
    }

    mutating func string(_ node: Node?, _ what: String) -> String? {
        guard let node else { return nil }
        guard let s = node.scalar?.string, node.tag.description != "tag:yaml.org,2002:null" || !s.isEmpty else {
            report(node, "\(what) must be a text value")
            return nil
        }
        if node.scalar == nil { report(node, "\(what) must be a text value"); return nil }
        return s
    }

    mutating func choice<T: RawRepresentable & CaseIterable>(_ node: Node?, _ what: String, as: T.Type) -> T? where T.RawValue == String {
        guard let node, let s = string(node, what) else { return nil }
        if let v = T(rawValue: s) { return v }
        let allowed = T.allCases.map(\.rawValue)
        let hint = closestWord(to: s, in: allowed).map { "did you mean \($0)?" } ?? ""
        report(node, "\(what) is '\(s)'; it must be one of \(allowed.joined(separator: ", "))" + (hint.isEmpty ? "" : "; \(hint)"))
        return nil
    }

    mutating func bool(_ node: Node?, _ what: String) -> Bool? {
        guard let node else { return nil }
        if let b = node.bool { return b }
        report(node, "\(what) must be true or false")
        return nil
    }

    mutating func int(_ node: Node?, _ what: String, min: Int = 0) -> Int? {
        guard let node else { return nil }
        guard let i = node.int, i >= min else {
            report(node, "\(what) must be a whole number of at least \(min)")
            return nil
        }
        return i
    }
}

/// The nearest allowed word, when it is a likely typo of `word`.
func closestWord(to word: String, in candidates: [String]) -> String? {
    closest(to: word, in: candidates)
}
