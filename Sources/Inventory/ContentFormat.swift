/// What the first bytes of a file must look like, judged by its name's extension.
///
/// A file whose hash is not known (a `files:` entry without `sha256:`, a filename match) can
/// still be told apart from an HTML login page or an error body: model formats have signatures.
/// The rules only reject what cannot be the start of the format; they never prove a file right.
///
/// - `.safetensors`, `.sft`: an 8-byte little-endian header length (1 byte … 100 MB) then `{`.
/// - `.gguf`: `GGUF`.
/// - `.pt`, `.pth`, `.ckpt`, `.pkl`: a zip archive (`PK\x03\x04`, torch.save since 1.6) or a
///   pickle of protocol 2–5 (`\x80` then 2…5; older torch.save and plain pickles).
/// - `.json`: `{` or `[` after white space.
/// - anything else (`.bin`, `.onnx`, `.txt`, `.model`, …): not a markup page (`<!doctype`,
///   `<html`, `<?xml`, `<head`, `<body`). `.bin` is used by too many formats to say more.
public enum ContentFormat {
    /// Bytes of a file's start that `problem(prefix:name:)` looks at.
    public static let prefixLength = 16

    /// Why `prefix` (the first up to `prefixLength` bytes; fewer only when the file is shorter)
    /// cannot start a file called `name`, or nil when it can.
    public static func problem(prefix: some Collection<UInt8>, name: String) -> String? {
        let bytes = Array(prefix.prefix(prefixLength))
        let ext = name.split(separator: ".").last.map { $0.lowercased() } ?? ""
        let kind = name.contains(".") ? ext : ""
        if let markup = markupStart(bytes) { return "it is \(markup), not a .\(kind.isEmpty ? "model" : kind) file" }
        switch kind {
        case "safetensors", "sft":
            guard bytes.count >= 9 else { return "it is too short to be a safetensors file (\(bytes.count) bytes)" }
            var length: UInt64 = 0
            for i in (0..<8).reversed() { length = length << 8 | UInt64(bytes[i]) }
            guard length >= 2, length <= 100_000_000, bytes[8] == UInt8(ascii: "{") else {
                return "it does not start with a safetensors header"
            }
        case "gguf":
            guard bytes.starts(with: Array("GGUF".utf8)) else { return "it does not start with the GGUF magic" }
        case "pt", "pth", "ckpt", "pkl":
            let zip = bytes.starts(with: [0x50, 0x4B, 0x03, 0x04])
            let pickle = bytes.count >= 2 && bytes[0] == 0x80 && (2...5).contains(bytes[1])
            guard zip || pickle else { return "it is neither a zip archive nor a pickle, as .\(kind) files are" }
        case "json":
            if let first = bytes.first(where: { !isSpace($0) }), first != UInt8(ascii: "{"), first != UInt8(ascii: "[") {
                return "it is not JSON"
            }
        default:
            break
        }
        return nil
    }

    static func isSpace(_ b: UInt8) -> Bool { b == 0x20 || b == 0x09 || b == 0x0A || b == 0x0D }

    /// "an HTML page" when the bytes open like markup (after white space and a UTF-8 BOM).
    static func markupStart(_ bytes: [UInt8]) -> String? {
        var rest = bytes[...]
        if rest.starts(with: [0xEF, 0xBB, 0xBF]) { rest = rest.dropFirst(3) }
        rest = rest.drop(while: isSpace)
        let text = String(decoding: rest, as: UTF8.self).lowercased()
        for (tag, what) in [("<!doctype", "an HTML page"), ("<html", "an HTML page"), ("<head", "an HTML page"),
                            ("<body", "an HTML page"), ("<?xml", "an XML document")] where text.hasPrefix(tag) {
            return what
        }
        return nil
    }
}
