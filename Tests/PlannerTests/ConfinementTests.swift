import Testing
@testable import Planner

// The confinement rule on the kernel's view of a path. Before: the rule split paths into Swift
// Characters, which fold "/" and a following combining mark (U+0301) into one, so
// "ckpts/../\u{301}x" had no ".." segment for the check while the kernel climbed out.

@Test(arguments: [
    "ckpts/../\u{301}escaped.safetensors",         // a combining mark hides the separator
    "loras/../\u{301}lockesc.safetensors",
    "ckpts/x|../\u{301}pwn/c.bin",
    "ckpts/.wgpm-partial/\u{301}b.safetensors",
    "ckpts/\u{202E}evil\u{200B}.bin",              // bidi override and zero-width space
    "ckpts/a\u{600}/../../x",                      // a prepend mark that joins what follows
    "ckpts/" + String(repeating: "a", count: 256), // one name over 255 bytes
    "ckpts/" + String(repeating: "abcdefgh/", count: 500) + "x",  // over 4000 bytes in all
    "ckpts/\u{301}x",
])
func pathsTheKernelWouldReadOtherwiseAreRefused(_ path: String) {
    #expect(confinementProblem(path) != nil, "accepted: \(path.unicodeScalars.map { String($0.value, radix: 16) })")
}

@Test(arguments: ["ckpts/umt5-xxl/tokenizer.json", "loras/wan/Wan2.1_Ré_style.safetensors", "loras/中文/风格.safetensors"])
func ordinaryNamesStayAcceptable(_ path: String) {
    #expect(confinementProblem(path) == nil)
}

/// An older Wan2GP's root-level LoRA folders are managed, by their exact names only.
@Test func legacyLoraFoldersAreManagedByNameOnly() {
    #expect(confinementProblem("loras_i2v/style.safetensors") == nil)
    #expect(confinementProblem("loras_flux/sub/x.safetensors") == nil)
    for bad in ["loras_i2v", "loras_evil/x.safetensors", "loras_i2v/../x", "Loras_i2v/x", "loras_i2v./x", "ckpts_i2v/x"] {
        #expect(confinementProblem(bad) != nil, "accepted: \(bad)")
    }
}

@Test func segmentsAreSplitOnTheSeparatorScalar() {
    #expect(pathSegments("ckpts/../\u{301}x") == ["ckpts", "..", "\u{301}x"])
    #expect(isBelow("ckpts/\u{301}x", root: "ckpts"))
    #expect(!isBelow("ckptsx/y", root: "ckpts"))
    #expect(printable("a\u{202E}b") == "a?b")
}

/// Human units and plurals, as issue 12 asks: "1 file", never "file(s)"; one decimal.
@Test func unitsAndPlurals() {
    #expect(formatBytes(17) == "17 B")
    #expect(formatBytes(999) == "999 B")
    #expect(formatBytes(1000) == "1.0 KB")
    #expect(formatBytes(154_100) == "154.1 KB")
    #expect(formatBytes(999_960) == "1.0 MB", "rounds into the next unit")
    #expect(formatBytes(14_300_000_000) == "14.3 GB")
    #expect(formatBytes(Int64.max) == "9223372.0 TB")
    #expect(counted(1, "file") == "1 file" && counted(2, "file") == "2 files" && counted(0, "job") == "0 jobs")
    #expect(formatDuration(0.2) == "1 s" && formatDuration(59) == "59 s" && formatDuration(60) == "1 min")
    #expect(formatDuration(725) == "12 min 5 s" && formatDuration(7380) == "2 h 3 min" && formatDuration(.infinity) != "")
}
