/// The connection side of a `ResponseWriter`: told when an answer the handler deferred is complete.
protocol ResponseWriterOwner: AnyObject {
    /// The deferred answer is in the writer; answer what waited behind it.
    func finishDeferred()
    var isClosing: Bool { get }
}

/// Where a handler writes the answer to one request: bound to the connection the request came on.
///
/// One writer per connection, made with it, so answering allocates nothing. A handler that answers later
/// keeps the writer (not the connection), appends its answer to `bytes` and calls `finishDeferred()`.
///
/// Why answers cannot reach another connection's socket, whatever order callbacks run in: the bytes of one batch
/// (everything a connection answers in one callback) live in the server's `ResponseScratch` only while this
/// writer holds it; the connection sends only its own writer's bytes. An answer given while another connection's
/// batch holds the scratch — a loader or router completing synchronously inside that connection's callback — goes
/// to a buffer of this writer's own, made for that batch and freed once it is sent (Redis's per-client reply
/// buffer). So the hot path keeps one buffer per loop and idle connections hold none.
public final class ResponseWriter {
    /// The connection; nil once its socket's close callback ran (which breaks the cycle between them). Strong
    /// until then, so that a handler answering late keeps the connection alive.
    private(set) var owner: ResponseWriterOwner?
    /// For a writer bound to no connection (handler unit tests): what `finishDeferred` calls instead.
    private let onFinishDeferred: (() -> Void)?
    let scratch: ResponseScratch
    /// This writer's own bytes, used only while another writer holds the scratch.
    private var spill: ByteBuffer?
    private var place = Place.none
    /// Large values of the open batch sent from their cache entries, not copied (`appendBorrowed`), in order.
    private(set) var borrowed: [BorrowedBytes] = []
    /// Bytes in `borrowed`.
    private var borrowedCount = 0

    /// Where the bytes of this writer's open batch are.
    private enum Place { case none, scratch, spill }

    init(owner: ResponseWriterOwner, scratch: ResponseScratch) {
        self.owner = owner
        self.scratch = scratch
        onFinishDeferred = nil
    }

    /// A writer bound to no connection: answers collect in `scratch` (read them with `scratch.bytes`) and
    /// `finishDeferred` calls `onFinishDeferred`, so a handler is tested without sockets.
    init(collectingInto scratch: ResponseScratch, onFinishDeferred: @escaping () -> Void) {
        owner = nil
        self.scratch = scratch
        self.onFinishDeferred = onFinishDeferred
    }

    /// The answers being written; append with `HTTPResponse.appendX(to: &writer.bytes, ...)`.
    public var bytes: ByteBuffer {
        _read {
            open()
            if place == .spill { yield spill! } else { yield scratch.bytes }
        }
        _modify {
            open()
            if place == .spill {
                yield &spill!
            } else {
                assert(scratch.holder == ObjectIdentifier(self), "writing into a scratch another writer holds")
                yield &scratch.bytes
            }
        }
    }

    /// Appends `value` to the answer without copying it: it is sent from where it lives (`keeper` keeps it valid,
    /// and is released once the bytes are written or dropped). Bytes appended to `bytes` afterwards follow it.
    public func appendBorrowed(_ value: UnsafeRawBufferPointer, keeper: AnyObject) {
        open()
        borrowed.append(BorrowedBytes(offset: copiedCount, bytes: value, keeper: keeper))
        borrowedCount += value.count
    }

    /// Whether the connection is closed or closing: a late answer is then dropped.
    public var isClosed: Bool { owner?.isClosing ?? (onFinishDeferred == nil) }

    /// Completes an answer the handler deferred; its bytes are in `bytes`.
    public func finishDeferred() {
        if let owner {
            owner.finishDeferred()
        } else if let onFinishDeferred {
            onFinishDeferred()
        } else {
            discard()
        }
    }

    // MARK: the connection's side

    /// Opens a batch if none is open: the scratch if it is free, else a buffer of this writer's own.
    func open() {
        if place != .none { return }
        if scratch.holder == nil {
            // Bytes in a free scratch were written past every writer: they could belong to anyone.
            assert(scratch.bytes.isEmpty, "answer bytes in the scratch that no writer holds")
            scratch.holder = ObjectIdentifier(self)
            place = .scratch
        } else {
            if spill == nil { spill = ByteBuffer(capacity: ResponseScratch.spillCapacity) }
            place = .spill
        }
    }

    /// Answer bytes of the open batch not yet sent, borrowed ones included (the output bounds count them alike).
    var pendingCount: Int { copiedCount + borrowedCount }

    /// Answer bytes of the open batch in `bytes` (not borrowed): where the next appended byte goes.
    var copiedCount: Int {
        switch place {
        case .none: return 0
        case .scratch: return scratch.bytes.count
        case .spill: return spill.byteCount
        }
    }

    /// Whether this writer's batch lives in the shared scratch (for tests and assertions).
    var holdsScratch: Bool { place == .scratch }

    /// Calls `body` with the open batch's unsent copied bytes (empty if none is open); `borrowed` go between them.
    ///
    /// The debug-build check that an answer never leaves on another connection's socket: the scratch remembers
    /// whose batch it holds, and only that writer's connection may send it.
    func withPendingBytes<R>(_ body: (UnsafeRawBufferPointer) -> R) -> R {
        switch place {
        case .none:
            return body(UnsafeRawBufferPointer(start: nil, count: 0))
        case .scratch:
            assert(scratch.holder == ObjectIdentifier(self), "sending a scratch another connection holds")
            return body(scratch.bytes.readable)
        case .spill:
            return body(UnsafeRawBufferPointer(start: spill.bytesBase, count: spill.byteCount))
        }
    }

    /// Borrowed bytes placed at or after `mark` in the copied bytes (for the access log's response size).
    func borrowedCount(from mark: Int) -> Int {
        borrowed.reduce(0) { $0 + ($1.offset >= mark ? $1.bytes.count : 0) }
    }

    /// The pending bytes were sent (or copied to the connection's queue); the batch stays open.
    func sentPending() {
        if !borrowed.isEmpty {
            // Why keep the capacity: a connection serving large values will serve more of them.
            borrowed.removeAll(keepingCapacity: true)
            borrowedCount = 0
        }
        switch place {
        case .none: break
        case .scratch: scratch.bytes.count = 0
        case .spill: spill!.count = 0
        }
    }

    /// Ends the batch: the scratch is free for the next connection, an own buffer is freed. Unsent bytes are
    /// dropped (the connection closed).
    func endBatch() {
        switch place {
        case .none: break
        case .scratch:
            scratch.release(ObjectIdentifier(self))
        case .spill:
            // Why free it: it exists only for an answer given inside another connection's batch, which is rare;
            // an idle connection holds no buffers.
            spill = nil
        }
        place = .none
    }

    /// Drops whatever the open batch holds (the connection is closing).
    func discard() {
        sentPending()
        endBatch()
    }

    /// The connection's socket is closed: a late answer is dropped from now on.
    func detach() {
        discard()
        owner = nil
    }
}

/// The server's scratch for answers: backs the writer of whichever connection has a batch open.
///
/// Why one per server: every response produced by one read is written with one `uv_try_write` from here, and
/// only what the kernel does not take at once is copied into the connection's own queue. So the hot path neither
/// allocates nor copies, and an idle connection holds no buffers. It is empty and free at every callback boundary.
final class ResponseScratch {
    /// What the scratch starts with, and what it goes back to after an answer made it grow past `keepCapacity`.
    static let initialCapacity = 64 << 10
    /// The most the scratch keeps between batches; one large answer must not pin its memory for good.
    static let keepCapacity = 1 << 20
    /// The first size of a writer's own buffer (an answer given inside another connection's batch).
    static let spillCapacity = 4096

    var bytes: ByteBuffer
    /// The writer whose batch the bytes are; nil when the scratch is free.
    fileprivate(set) var holder: ObjectIdentifier?

    init(capacity: Int = ResponseScratch.initialCapacity) {
        bytes = ByteBuffer(capacity: capacity)
    }

    /// Whether a writer holds the scratch (for tests and assertions).
    var isHeld: Bool { holder != nil }

    fileprivate func release(_ writer: ObjectIdentifier) {
        precondition(holder == writer, "releasing a scratch another writer holds")
        holder = nil
        bytes.count = 0
        if bytes.capacity > ResponseScratch.keepCapacity { bytes.shrink(to: ResponseScratch.initialCapacity) }
    }
}
