import CNGHTTP2
import XCTest

@testable import SpringCacheUV

/// Records what a client session reports to its client, as `GRPCClient` would act on it.
final class GRPCTestClientOwner: GRPCClientSessionOwner {
    var settings = GRPCClientSettings()
    let headers = HTTP2HeaderBlock()
    var authority: String { "peer-under-test" }
    var results: [Int32: GRPCResult] = [:]
    var handshakes = 0
    var retired = 0
    var lost: [(reason: String, calls: Int)] = []
    /// How often the session asked for the queued completions to run (once per input pass).
    var completionPasses = 0

    func finish(_ call: GRPCClientCall, _ result: GRPCResult) {
        guard !call.isDone else { return }
        call.isDone = true
        call.result = result
        results[call.streamID] = result
    }

    func runCompletions() { completionPasses += 1 }
    func sessionCompletedHandshake(_ session: GRPCClientSession) { handshakes += 1 }
    func retire(_ session: GRPCClientSession) { retired += 1 }

    func sessionLost(_ session: GRPCClientSession, reason: String, calls: [GRPCClientCall]) {
        lost.append((reason, calls.count))
        for call in calls {
            finish(call, .failure(GRPCCallError(status: .unavailable, message: "connection lost: \(reason)")))
        }
    }
}

/// Our client session against our server session, in memory: no sockets, time from a manual clock.
final class GRPCClientSessionTests: XCTestCase {
    private var clock: ManualScheduler!
    private var handler: HTTP2TestHandler!
    private var context: GRPCServerContext!
    private var owner: GRPCTestClientOwner!
    private var server: GRPCServerSession!
    private var client: GRPCClientSession!

    override func setUp() {
        clock = ManualScheduler()
        handler = HTTP2TestHandler()
        context = GRPCServerContext(settings: GRPCServerSettings(), handler: handler, abuse: AbuseLog(),
                                    scheduler: clock)
        server = GRPCServerSession(context: context)
        context.sessionOpened(server)
        XCTAssertEqual(server.open(), .proceed)
        owner = GRPCTestClientOwner()
        client = GRPCClientSession(owner: owner, nowMillis: clock.nowMillis)
        client.wasConnected = true
        client.open()
    }

    override func tearDown() {
        if !server.isClosed { server.closed(reason: "test over") }
        if !client.isClosed { client.closed(reason: "test over") }
        server = nil
        client = nil
        context.close()
        context = nil
    }

    private func pull(_ session: HTTP2Session) -> ([UInt8], HTTP2Action) {
        let out = HTTP2IOBuffers(readCapacity: 16)
        let action = session.produceOutput(into: &out.output, budget: .max)
        return (Array(out.output.readable), action)
    }

    /// Moves bytes both ways until both are quiet; returns the client's last action.
    @discardableResult
    private func exchange() -> HTTP2Action {
        var clientAction = HTTP2Action.proceed
        for _ in 0..<32 {
            let (fromClient, _) = pull(client)
            if !fromClient.isEmpty { _ = fromClient.withUnsafeBytes { server.receive($0, now: clock.nowMillis) } }
            let (fromServer, _) = pull(server)
            if !fromServer.isEmpty {
                clientAction = fromServer.withUnsafeBytes { client.receive($0, now: clock.nowMillis) }
            }
            if fromClient.isEmpty && fromServer.isEmpty { break }
        }
        return clientAction
    }

    private func call(_ message: [UInt8], timeoutMillis: Int64 = 2_000) -> GRPCClientCall {
        let call = GRPCClientCall(path: PeerService.getPath, request: message, metadata: [],
                                  expiresAtMillis: clock.nowMillis + timeoutMillis,
                                  maxMessageBytes: owner.settings.maxMessageBytes) { _ in }
        client.start(call, now: clock.nowMillis)
        return call
    }

    func testUnaryCallsRoundTripAndSendTheDeadline() throws {
        let first = call(Array("one".utf8), timeoutMillis: 1_500)
        let second = call(Array("two".utf8))
        exchange()
        XCTAssertEqual(owner.handshakes, 1)
        XCTAssertEqual(try owner.results[first.streamID]?.get(), Array("one".utf8))
        XCTAssertEqual(try owner.results[second.streamID]?.get(), Array("two".utf8))
        XCTAssertEqual(handler.calls.first?.deadlineMillis, clock.nowMillis + 1_500, "grpc-timeout reached the server")
        XCTAssertEqual(context.stats.calls, 2)
    }

    func testServerStatusReachesTheCaller() {
        let c = call(Array("never".utf8))
        exchange()
        handler.calls[0].fail(status: .notFound, message: "no such key: “Tom” 100%")
        exchange()
        guard case .failure(let error)? = owner.results[c.streamID] else { return XCTFail("no failure") }
        XCTAssertEqual(error.status, .notFound)
        XCTAssertEqual(error.message, "no such key: “Tom” 100%")
        XCTAssertTrue(error.fromPeer)
    }

    func testResponseOverTheClientLimitFailsAndResetsTheStream() {
        owner.settings.maxMessageBytes = 100
        let c = call([UInt8](repeating: 1, count: 200))
        exchange()
        guard case .failure(let error)? = owner.results[c.streamID] else { return XCTFail("accepted") }
        XCTAssertEqual(error.status, .resourceExhausted)
        XCTAssertEqual(server.openStreams, 0, "the reset reached the server")
    }

    func testGracefulGoAwayRetiresTheSessionAndLetsTakenCallsFinish() throws {
        let c = call(Array("never".utf8))
        exchange()
        server.goAway()
        exchange()
        XCTAssertEqual(owner.retired, 1)
        XCTAssertNil(owner.results[c.streamID], "a call the server took may still finish")
        handler.calls[0].respond(message: Array("late".utf8))
        let action = exchange()
        XCTAssertEqual(try owner.results[c.streamID]?.get(), Array("late".utf8))
        XCTAssertEqual(pull(client).1, .closeWhenFlushed(reason: "connection finished"), "the session is over")
        XCTAssertEqual(action, .proceed)
    }

    func testGoAwayWithAnErrorFailsEveryCallAtOnce() {
        let a = call(Array("never".utf8))
        let b = call(Array("never".utf8))
        exchange()
        _ = server.terminate(errorCode: NGHTTP2_INTERNAL_ERROR.rawValue, reason: "test")
        let action = exchange()
        guard case .close(let reason) = action else { return XCTFail("connection kept: \(action)") }
        XCTAssertTrue(reason.contains("server sent GOAWAY"), reason)
        XCTAssertEqual(owner.lost.count, 1)
        XCTAssertEqual(owner.lost.first?.calls, 2)
        for c in [a, b] {
            guard case .failure(let error)? = owner.results[c.streamID] else { return XCTFail("call not failed") }
            XCTAssertEqual(error.status, .unavailable)
        }
    }

    // MARK: coalescing (issue 11): one turn's calls leave in one write, one read's answers complete in one pass

    func testCallsStartedInOneTurnLeaveInOneBatchAndTheirAnswersCompleteInOnePass() throws {
        exchange()  // the handshake, so what follows is only the calls
        let messages = (0..<16).map { Array("call \($0)".utf8) }
        let calls = messages.map { call($0) }
        let (batch, action) = pull(client)
        XCTAssertEqual(action, .proceed)
        XCTAssertTrue(pull(client).0.isEmpty, "everything left in the first batch")
        _ = batch.withUnsafeBytes { server.receive($0, now: clock.nowMillis) }
        XCTAssertEqual(handler.calls.map { $0.message }, messages, "all arrived in one read, in the order started")
        let (answers, _) = pull(server)
        let passes = owner.completionPasses
        _ = answers.withUnsafeBytes { client.receive($0, now: clock.nowMillis) }
        XCTAssertEqual(owner.completionPasses, passes + 1, "one read, one pass of completions")
        for (c, message) in zip(calls, messages) {
            XCTAssertEqual(try owner.results[c.streamID]?.get(), message)
        }
        XCTAssertEqual(calls.map { $0.streamID }, calls.map { $0.streamID }.sorted(), "stream ids in call order")
    }

    func testACallCancelledBeforeTheBatchLeavesDoesNotHoldUpTheOthers() throws {
        exchange()
        let first = call(Array("first".utf8))
        let cancelled = call(Array("never".utf8), timeoutMillis: 10)
        let last = call(Array("last".utf8))
        // Its deadline passes in the same turn, before the flush (as GRPCClient.deadlinePassed does it).
        owner.finish(cancelled, .failure(GRPCCallError(status: .deadlineExceeded, message: "deadline exceeded")))
        client.cancel(cancelled)
        exchange()
        XCTAssertEqual(try owner.results[first.streamID]?.get(), Array("first".utf8))
        XCTAssertEqual(try owner.results[last.streamID]?.get(), Array("last".utf8))
        guard case .failure(let error)? = owner.results[cancelled.streamID] else { return XCTFail("not failed") }
        XCTAssertEqual(error.status, .deadlineExceeded)
        XCTAssertEqual(server.openStreams, 0, "the cancelled stream is not left open on the server")
    }

    // MARK: allocations (issue 11)

    func testStreamsAfterTheFirstReuseNGHTTP2sMemory() throws {
        // A few streams first: the HPACK tables settle (they grow as they learn the headers).
        for _ in 0..<5 {
            let warm = call(Array("warm".utf8))
            exchange()
            XCTAssertEqual(try owner.results[warm.streamID]?.get(), Array("warm".utf8))
        }
        let clientMallocs = client.allocator.mallocs
        let serverMallocs = server.allocator.mallocs
        for i in 0..<50 {
            let c = call(Array("call \(i)".utf8))
            exchange()
            XCTAssertEqual(try owner.results[c.streamID]?.get(), Array("call \(i)".utf8))
        }
        XCTAssertEqual(client.allocator.mallocs, clientMallocs, "the client's nghttp2 reused freed blocks")
        XCTAssertEqual(server.allocator.mallocs, serverMallocs, "the server's nghttp2 reused freed blocks")
    }

    func testALateAnswerToAReusedCallsOldStreamIsIgnored() throws {
        exchange()
        // With the reset of the old stream still unsent (GRPCClient.deadlinePassed), and without one.
        for cancelOldStream in [true, false] {
            let reused = call(Array("never answered in time".utf8), timeoutMillis: 10)
            exchange()
            let oldStream = reused.streamID
            // The server answers, but its frames are still on the way when the deadline passes.
            handler.calls.last!.respond(message: Array("old answer".utf8))
            let (late, _) = pull(server)
            XCTAssertFalse(late.isEmpty)
            owner.finish(reused, .failure(GRPCCallError(status: .deadlineExceeded, message: "deadline exceeded")))
            if cancelOldStream { client.cancel(reused) }
            reused.completion = nil  // its completion ran (GRPCClient.runCompletions); the object is reused now
            reused.reuse(path: PeerService.getPath, metadata: [], expiresAtMillis: clock.nowMillis + 2_000) { _ in }
            Array("new".utf8).withUnsafeBytes { reused.setRequest($0) }
            client.start(reused, now: clock.nowMillis)
            XCTAssertNotEqual(reused.streamID, oldStream)
            // The old stream's HEADERS, DATA and trailers arrive now: they belong to the old use, not this one.
            _ = late.withUnsafeBytes { client.receive($0, now: clock.nowMillis) }
            XCTAssertFalse(reused.isDone, "the old stream's end did not complete the new use (\(cancelOldStream))")
            XCTAssertNil(reused.grpcStatus, "the old stream's trailers did not reach the new use")
            XCTAssertEqual(reused.decoder.messageCount, 0, "the old stream's DATA did not reach the new use")
            XCTAssertEqual(reused.httpStatus, 0, "the old stream's HEADERS did not reach the new use")
            exchange()
            XCTAssertEqual(try owner.results[reused.streamID]?.get(), Array("new".utf8), "the new use's own answer")
            XCTAssertEqual(server.openStreams, 0)
        }
    }

    func testStatusDigitsAreReadWithoutAString() {
        func decimal(_ s: String) -> Int? { Array(s.utf8).withUnsafeBytes { GRPCClientSession.decimal($0) } }
        XCTAssertEqual(decimal("200"), 200)
        XCTAssertEqual(decimal("0"), 0)
        XCTAssertEqual(decimal("16"), 16)
        XCTAssertNil(decimal(""))
        XCTAssertNil(decimal("2x"))
        XCTAssertNil(decimal("-1"))
        XCTAssertNil(decimal("1234567890"))
    }
}
