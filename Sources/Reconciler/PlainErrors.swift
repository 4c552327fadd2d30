import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// An error as one plain sentence. wgpm's own errors already are; Foundation's file errors
/// would print as `Error Domain=NSCocoaErrorDomain Code=513 … UserInfo={…}`, so they are
/// turned into "PATH: permission denied" from the underlying errno.
public func plainText(of error: Error, withPath: Bool = true) -> String {
    let ns = error as NSError
    guard ns.domain == NSCocoaErrorDomain || ns.domain == NSPOSIXErrorDomain else { return "\(error)" }
    var code: Int32?
    if ns.domain == NSPOSIXErrorDomain { code = Int32(ns.code) }
    // Foundation's own codes for the common file failures, when no errno comes with them.
    let cocoa: [Int: Int32] = [4: ENOENT, 260: ENOENT, 257: EACCES, 513: EACCES, 640: ENOSPC, 642: EROFS]
    if ns.domain == NSCocoaErrorDomain { code = cocoa[ns.code] }
    if let underlying = ns.userInfo[NSUnderlyingErrorKey] as? NSError, underlying.domain == NSPOSIXErrorDomain {
        code = Int32(underlying.code)
    }
    let path = (ns.userInfo[NSFilePathErrorKey] as? String) ?? (ns.userInfo[NSURLErrorKey] as? URL)?.path
    let reason = code.map { String(cString: strerror($0)).lowercased() } ?? "the operation failed (code \(ns.code))"
    guard withPath, let path else { return reason }
    return "\(path): \(reason)"
}

/// A Foundation error as a plain error: for `throw` where a command reports it.
public struct PlainError: Error, CustomStringConvertible {
    public var description: String
    public init(_ error: Error) { description = plainText(of: error) }
}
