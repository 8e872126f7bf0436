/// Where a handler writes the answer to one request: bound to the connection the request came on.
///
/// One writer per connection, made with it, so answering allocates nothing. A handler that answers later
/// keeps the writer (not the connection), appends its answer to `bytes` and calls `finishDeferred()`.
/// The bytes may be backed by a loop-wide scratch buffer (idle connections hold no buffers), but they only
/// ever go out on this writer's connection.
public final class ResponseWriter {
    let connection: HTTPConnection

    init(connection: HTTPConnection) {
        self.connection = connection
    }

    /// The answer being written; append with `HTTPResponse.appendX(to: &writer.bytes, ...)`.
    public var bytes: ByteBuffer {
        _read { yield connection.server.output.bytes }
        _modify { yield &connection.server.output.bytes }
    }

    /// Whether the connection is closed or closing: a late answer is then dropped.
    public var isClosed: Bool { connection.isClosing }

    /// Completes an answer the handler deferred; its bytes are in `bytes`.
    public func finishDeferred() {
        connection.finishDeferred()
    }
}
