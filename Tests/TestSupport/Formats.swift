import Foundation

/// `data` with its first 16 bytes replaced by a minimal safetensors header (8-byte length 8,
/// then `{}` padded), so a test file named `.safetensors` passes wgpm's format check while
/// keeping its size and the rest of its bytes.
public func withSafetensorsStart(_ data: Data) -> Data {
    var out = data
    let start: [UInt8] = [8, 0, 0, 0, 0, 0, 0, 0] + Array("{}      ".utf8)
    out.replaceSubrange(0..<min(16, out.count), with: start.prefix(out.count))
    return out
}
