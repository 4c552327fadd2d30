/// Decimal units, as disks and the Hub's web pages report sizes: `812.0 GB`, `34.0 KB`, `17 B`.
/// One decimal, rounded half up. Pure integer arithmetic, so it lives with the pure planner and
/// every stage's messages share it.
public func formatBytes(_ bytes: Int64) -> String {
    let units = ["B", "KB", "MB", "GB", "TB"]
    guard bytes >= 1000 || bytes <= -1000 else { return "\(bytes) B" }
    let negative = bytes < 0
    let magnitude = bytes.magnitude
    var unit = 0
    var scale: UInt64 = 1
    while unit < units.count - 1, magnitude / scale >= 1000 {
        scale *= 1000
        unit += 1
    }
    var tenths = (magnitude.multipliedReportingOverflow(by: 10).overflow ? magnitude / (scale / 10) : (magnitude * 10 + scale / 2) / scale)
    if tenths >= 10_000, unit < units.count - 1 {  // 999.96 KB rounds to 1000.0 KB: say 1.0 MB
        unit += 1
        scale *= 1000
        tenths = (magnitude * 10 + scale / 2) / scale
    }
    return (negative ? "-" : "") + "\(tenths / 10).\(tenths % 10) \(units[unit])"
}

/// "1 file", "2 files": a count with its noun, never "file(s)". `plural` defaults to noun + "s".
public func counted(_ n: Int, _ noun: String, plural: String? = nil) -> String {
    "\(n) \(n == 1 ? noun : plural ?? noun + "s")"
}

/// A duration for people: "45 s", "12 min 5 s", "2 h 3 min" (seconds rounded up, so a wait
/// that is not over never reads "0 s").
public func formatDuration(_ seconds: Double) -> String {
    let total = seconds.isFinite ? Int(max(0, seconds.rounded(.up)).clamped(to: 0...Double(Int32.max))) : Int(Int32.max)
    let (h, m, s) = (total / 3600, total / 60 % 60, total % 60)
    if h > 0 { return m > 0 ? "\(h) h \(m) min" : "\(h) h" }
    if m > 0 { return s > 0 ? "\(m) min \(s) s" : "\(m) min" }
    return "\(s) s"
}

/// A sentence's first word lowercased when it is a plain word ("Unknown option",
/// "Couldn't connect"), for a message placed inside a sentence of ours; a name such as
/// "InvokeAI" or "HF_TOKEN" keeps its case.
public func lowercasedFirstWord(_ text: String) -> String {
    let word = text.prefix { $0.isLetter }
    guard let first = word.first, first.isUppercase, word.count > 1, word.dropFirst().allSatisfy(\.isLowercase) else { return text }
    return first.lowercased() + text.dropFirst()
}

private extension Comparable {
    func clamped(to range: ClosedRange<Self>) -> Self { min(max(self, range.lowerBound), range.upperBound) }
}
