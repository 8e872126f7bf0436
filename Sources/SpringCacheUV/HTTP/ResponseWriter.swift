/// Where a handler writes the answer to one request: bound to the connection the request came on.
///
/// One writer per connection, made with it, so answering allocates nothing. A handler that answers later
/// keeps the writer (not the connection), appends its answer to `bytes` and calls `finishDeferred()`.
/// The bytes may be backed by a loop-wide scratch buffer (idle connections hold no buffers), but they only
/// ever go out on this writer's connection.
public final class ResponseWriter {
    /// The connection the answers go out on; nil for a writer that only collects them (handler unit tests).
    let connection: HTTPConnection?
    private let output: ResponseBuffer
    /// Without a connection: what `finishDeferred` calls instead.
    private let onFinishDeferred: (() -> Void)?

    init(connection: HTTPConnection) {
        self.connection = connection
        output = connection.server.output
        onFinishDeferred = nil
    }

    /// A writer bound to no connection: answers collect in `output` and `finishDeferred` calls
    /// `onFinishDeferred`, so a handler is tested without sockets.
    init(collectingInto output: ResponseBuffer, onFinishDeferred: @escaping () -> Void) {
        connection = nil
        self.output = output
        self.onFinishDeferred = onFinishDeferred
    }

    /// The answer being written; append with `HTTPResponse.appendX(to: &writer.bytes, ...)`.
    public var bytes: ByteBuffer {
        _read { yield output.bytes }
        _modify { yield &output.bytes }
    }

    /// Whether the connection is closed or closing: a late answer is then dropped.
    public var isClosed: Bool { connection?.isClosing ?? false }

    /// Completes an answer the handler deferred; its bytes are in `bytes`.
    public func finishDeferred() {
        if let connection {
            connection.finishDeferred()
        } else {
            onFinishDeferred?()
        }
    }
}
