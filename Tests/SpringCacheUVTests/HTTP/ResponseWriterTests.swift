import XCTest
@testable import SpringCacheUV

/// Answers go through a writer bound to their connection: whatever order callbacks run in, no answer reaches
/// another connection's socket, and the hot path keeps using the one shared scratch.
final class ResponseWriterTests: XCTestCase {
    /// A connection without a socket: runs its requests through `handler` in batches as `HTTPConnection` does
    /// (open the writer, answer in order, stop at a deferred answer, send once at the end) and records what it
    /// sent on its "socket".
    private final class TestConnection: ResponseWriterOwner {
        let name: String
        private(set) var writer: ResponseWriter!
        private(set) var sent: [UInt8] = []
        private(set) var sends = 0
        private var waiting: [String] = []
        private var awaitingAnswer = false
        var handler: ((String, TestConnection) -> HTTPHandling)!
        var isClosing = false

        init(_ name: String, scratch: ResponseScratch) {
            self.name = name
            writer = ResponseWriter(owner: self, scratch: scratch)
        }

        var sentText: String { String(decoding: sent, as: UTF8.self) }

        /// A read of pipelined requests.
        func receive(_ requests: [String]) {
            waiting += requests
            writer.open()
            serve()
            flush()
        }

        func finishDeferred() {
            precondition(awaitingAnswer)
            awaitingAnswer = false
            serve()
            flush()
        }

        private func serve() {
            while !awaitingAnswer, !waiting.isEmpty {
                let request = waiting.removeFirst()
                if handler(request, self) == .deferred { awaitingAnswer = true }
            }
        }

        private func flush() {
            writer.withPendingBytes { sent += $0 }
            if writer.pendingCount > 0 { sends += 1 }
            writer.sentPending()
            writer.endBatch()
        }

        func answer(_ text: String) {
            writer.bytes.append(text)
        }
    }

    /// A loader that batches: each load is held until the next one arrives, which completes every held load
    /// first, synchronously, inside the caller's request (as a batching origin or a router without a client
    /// may) — the order that once could send one connection's answer on another's socket.
    private final class BatchingLoader {
        private var held: [(String) -> Void] = []

        func load(_ key: String, completion: @escaping (String) -> Void) {
            let ready = held
            held = [{ _ in completion("value-of-\(key)") }]
            for c in ready { c("") }
        }

        func completeAll() {
            let ready = held
            held = []
            for c in ready { c("") }
        }
    }

    /// A router that answers at once, inside the call (like `Cluster.call` without a client).
    private final class SynchronousRouter {
        func call(_ key: String, completion: (String) -> Void) {
            completion("routed-\(key)")
        }
    }

    /// The API's shape: a hit is answered at once, a miss asks the loader and answers when it lands.
    private func handler(loader: BatchingLoader,
                         router: SynchronousRouter) -> (String, TestConnection) -> HTTPHandling {
        { request, connection in
            if request.hasPrefix("hit:") {
                connection.answer("[\(connection.name) \(request)]")
                return .done
            }
            if request.hasPrefix("routed:") {
                var done = false
                router.call(request) { value in
                    connection.answer("[\(connection.name) \(value)]")
                    done = true
                }
                return done ? .done : .deferred
            }
            var inside = true
            var finishedInside = false
            loader.load(request) { value in
                connection.answer("[\(connection.name) \(request) \(value)]")
                if inside { finishedInside = true } else { connection.writer.finishDeferred() }
            }
            inside = false
            return finishedInside ? .done : .deferred
        }
    }

    func testAnAnswerGivenInsideAnotherConnectionsBatchGoesOnlyToItsOwnConnection() {
        let scratch = ResponseScratch(capacity: 256)
        let loader = BatchingLoader()
        let router = SynchronousRouter()
        let a = TestConnection("A", scratch: scratch)
        let b = TestConnection("B", scratch: scratch)
        a.handler = handler(loader: loader, router: router)
        b.handler = handler(loader: loader, router: router)

        // B asks for a miss and waits, with a hit pipelined behind it.
        b.receive(["miss:k1", "hit:b2"])
        XCTAssertEqual(b.sentText, "")
        XCTAssertFalse(scratch.isHeld)

        // A's batch: a hit, a routed answer, then a miss whose load completes B's held load synchronously, in the
        // middle of A's batch; then another hit of A.
        a.receive(["hit:a1", "routed:a2", "miss:k2", "hit:a3"])
        XCTAssertEqual(b.sentText, "[B miss:k1 value-of-miss:k1][B hit:b2]",
                       "B's answers, and only B's, left on B's socket")
        XCTAssertEqual(a.sentText, "[A hit:a1][A routed-routed:a2]", "A stops at its own deferred miss")
        XCTAssertEqual(a.sends, 1, "A's batch went out with one send")
        XCTAssertFalse(scratch.isHeld, "the scratch is free at the callback boundary")

        loader.completeAll()
        XCTAssertEqual(a.sentText, "[A hit:a1][A routed-routed:a2][A miss:k2 value-of-miss:k2][A hit:a3]",
                       "A's answers in order, none of B's")
        XCTAssertEqual(b.sentText, "[B miss:k1 value-of-miss:k1][B hit:b2]")
    }

    func testTheHotPathUsesTheSharedScratchAndAnIdleWriterHoldsNoBuffer() {
        let scratch = ResponseScratch(capacity: 256)
        let a = TestConnection("A", scratch: scratch)
        a.handler = handler(loader: BatchingLoader(), router: SynchronousRouter())
        a.writer.open()
        XCTAssertTrue(a.writer.holdsScratch)
        a.answer("x")
        XCTAssertEqual(scratch.bytes.count, 1, "the answer is written into the scratch, not copied")
        a.writer.sentPending()
        a.writer.endBatch()
        XCTAssertFalse(scratch.isHeld)
        XCTAssertEqual(a.writer.pendingCount, 0)
    }

    func testAWriterThatFindsTheScratchTakenWritesToItsOwnBufferAndFreesItAfterSending() {
        let scratch = ResponseScratch(capacity: 256)
        let a = TestConnection("A", scratch: scratch)
        let b = TestConnection("B", scratch: scratch)
        a.writer.open()
        a.answer("aaa")
        b.answer("bb")
        XCTAssertFalse(b.writer.holdsScratch)
        XCTAssertEqual(scratch.bytes.count, 3, "B's bytes never enter A's batch")
        XCTAssertEqual(b.writer.pendingCount, 2)
        b.writer.withPendingBytes { XCTAssertEqual(Array($0), Array("bb".utf8)) }
        b.writer.sentPending()
        b.writer.endBatch()
        XCTAssertEqual(b.writer.pendingCount, 0)
        a.writer.withPendingBytes { XCTAssertEqual(Array($0), Array("aaa".utf8)) }
        a.writer.discard()
        XCTAssertFalse(scratch.isHeld)
    }

    func testALateAnswerAfterTheConnectionClosedIsDropped() {
        let scratch = ResponseScratch(capacity: 256)
        let a = TestConnection("A", scratch: scratch)
        let writer = a.writer!
        writer.detach()
        XCTAssertTrue(writer.isClosed)
        writer.bytes.append("late")
        writer.finishDeferred()
        XCTAssertFalse(scratch.isHeld, "a dropped answer does not keep the scratch")
        XCTAssertEqual(scratch.bytes.count, 0)
    }

    func testTheScratchGivesBackMemoryALargeAnswerTook() {
        let scratch = ResponseScratch()
        let a = TestConnection("A", scratch: scratch)
        a.writer.bytes.append([UInt8](repeating: 1, count: ResponseScratch.keepCapacity + 1))
        a.writer.sentPending()
        a.writer.endBatch()
        XCTAssertEqual(scratch.bytes.capacity, ResponseScratch.initialCapacity)
    }
}
