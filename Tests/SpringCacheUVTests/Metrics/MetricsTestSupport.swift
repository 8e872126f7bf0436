@testable import SpringCacheUV

/// The text `body` writes into a fresh buffer (Prometheus pages, JSON documents).
func renderedText(_ body: (inout ByteBuffer) -> Void) -> String {
    var out = ByteBuffer(capacity: 16)
    body(&out)
    return String(decoding: out.readable, as: UTF8.self)
}
