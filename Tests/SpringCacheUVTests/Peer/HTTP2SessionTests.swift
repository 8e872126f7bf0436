import CNGHTTP2
import XCTest

@testable import SpringCacheUV

/// The gRPC server session without sockets or timers: bytes from an in-process nghttp2 client go in,
/// the session's output goes back, and time moves only when the test moves the `ManualScheduler` (whose
/// timers, the call deadlines, fire as it moves).
final class HTTP2SessionTests: XCTestCase {
    private var clock: ManualScheduler!
    private var handler: HTTP2TestHandler!
    private var context: GRPCServerContext!
    /// Every session the test opened, with its driver (kept alive for the test's length).
    private var opened: [(GRPCServerSession, HTTP2TestDriver)] = []

    private func makeContext(_ configure: (inout GRPCServerSettings) -> Void = { _ in }) {
        var settings = GRPCServerSettings()
        configure(&settings)
        clock = ManualScheduler()
        handler = HTTP2TestHandler()
        context = GRPCServerContext(settings: settings, handler: handler, abuse: AbuseLog(), scheduler: clock)
    }

    override func tearDown() {
        for (session, _) in opened where !session.isClosed { session.closed(reason: "test over") }
        opened = []
        context?.close()
        context = nil
        handler = nil
    }

    /// A new server session as `GRPCServer.accept` makes it, with its SETTINGS queued.
    private func openSession() -> (GRPCServerSession, HTTP2TestDriver) {
        let session = GRPCServerSession(context: context)
        let driver = HTTP2TestDriver()
        driver.session = session
        session.driver = driver
        context.sessionOpened(session)
        XCTAssertEqual(session.open(), .proceed)
        opened.append((session, driver))
        return (session, driver)
    }

    /// What the server session has to send now (as its driver would pull it, with no socket bound).
    private func serverOutput(_ session: GRPCServerSession) -> (bytes: [UInt8], action: HTTP2Action) {
        let action = session.produceOutput(into: &context.buffers.output, budget: .max)
        let bytes = Array(context.buffers.output.readable)
        context.buffers.output.count = 0
        return (bytes, action)
    }

    /// Moves bytes both ways until neither side has anything to send; returns the first action that was
    /// not `.proceed`, if any.
    @discardableResult
    private func exchange(_ client: HTTP2TestClient, _ session: GRPCServerSession) -> HTTP2Action {
        for _ in 0..<32 {
            let fromClient = client.output()
            if !fromClient.isEmpty {
                let action = fromClient.withUnsafeBytes { session.receive($0, now: clock.nowMillis) }
                if action != .proceed {
                    client.input(serverOutput(session).bytes)
                    return action
                }
            }
            let (fromServer, action) = serverOutput(session)
            client.input(fromServer)
            if action != .proceed { return action }
            if fromClient.isEmpty && fromServer.isEmpty { return .proceed }
        }
        XCTFail("client and server kept talking")
        return .proceed
    }

    private func tick(_ session: GRPCServerSession) -> HTTP2Action {
        session.tick(now: clock.nowMillis)
    }

    /// Moves time to 1 ms before `millis` from now (the tick keeps the connection), then to `millis` (the
    /// tick closes it as a connection timeout, saying `why`).
    private func assertTimesOut(_ session: GRPCServerSession, after millis: Int64, saying why: String,
                                file: StaticString = #filePath, line: UInt = #line) {
        clock.advance(byMillis: millis - 1)
        XCTAssertEqual(tick(session), .proceed, "closed before its deadline", file: file, line: line)
        clock.advance(byMillis: 1)
        guard case .close(let reason) = tick(session) else {
            return XCTFail("kept past its deadline", file: file, line: line)
        }
        XCTAssertTrue(reason.contains(why), reason, file: file, line: line)
        XCTAssertEqual(context.stats.connectionTimeouts, 1, file: file, line: line)
    }

    // MARK: handshake

    func testPrefaceAndSettingsHandshakeThenAUnaryCall() {
        makeContext()
        let (session, _) = openSession()
        let client = HTTP2TestClient()
        XCTAssertFalse(session.handshakeComplete)
        XCTAssertEqual(exchange(client, session), .proceed)
        XCTAssertTrue(session.handshakeComplete)
        // Without a peer token, a finished handshake is authentication enough.
        XCTAssertTrue(session.isAuthenticated)
        XCTAssertTrue(context.unauthenticated.isEmpty)

        let id = client.request(Array("hello".utf8))
        XCTAssertEqual(exchange(client, session), .proceed)
        let stream = client.streams[id]
        XCTAssertEqual(stream?.header(":status"), "200")
        XCTAssertEqual(stream?.grpcStatus, 0)
        XCTAssertEqual(stream?.message, Array("hello".utf8))
        XCTAssertEqual(stream?.closedCode, NGHTTP2_NO_ERROR.rawValue)
        XCTAssertEqual(context.stats.calls, 1)
        XCTAssertEqual(context.stats.answers[0], 1)
        XCTAssertEqual(context.heldBytes, 0, "an answer sent holds nothing")
    }

    func testHandshakeTimeoutClosesASilentConnection() {
        makeContext { $0.handshakeTimeoutMillis = 5_000 }
        let (session, _) = openSession()
        assertTimesOut(session, after: 5_000, saying: "no HTTP/2 preface and SETTINGS within 5000 ms")
    }

    func testHandshakeInTimeKeepsTheConnection() {
        makeContext { $0.handshakeTimeoutMillis = 5_000 }
        let (session, _) = openSession()
        clock.advance(byMillis: 4_000)
        exchange(HTTP2TestClient(), session)
        clock.advance(byMillis: 2_000)
        XCTAssertEqual(tick(session), .proceed)
        XCTAssertEqual(context.stats.connectionTimeouts, 0)
    }

    func testNotHTTP2IsClosedWithoutAGoAway() {
        makeContext()
        let (session, _) = openSession()
        let action = Array("GET / HTTP/1.1\r\nHost: x\r\n\r\n".utf8).withUnsafeBytes {
            session.receive($0, now: clock.nowMillis)
        }
        guard case .close(let reason) = action else { return XCTFail("HTTP/1.1 was not refused: \(action)") }
        XCTAssertTrue(reason.hasPrefix("HTTP/2 error"), reason)
        XCTAssertEqual(context.stats.protocolErrors, 1)
    }

    // MARK: idle connections

    /// A session that finished its handshake and then heard nothing until its PING was due (idle 60 s; the
    /// answer is then awaited 10 s).
    private func silentUntilPing() -> (GRPCServerSession, HTTP2TestClient) {
        makeContext {
            $0.idleTimeoutMillis = 60_000
            $0.pingTimeoutMillis = 10_000
        }
        let (session, driver) = openSession()
        let client = HTTP2TestClient()
        exchange(client, session)
        clock.advance(byMillis: 59_999)
        XCTAssertEqual(tick(session), .proceed)
        XCTAssertEqual(driver.flushRequests, 0, "no PING before the idle timeout")
        clock.advance(byMillis: 1)
        XCTAssertEqual(tick(session), .proceed)
        XCTAssertEqual(driver.flushRequests, 1, "the PING asks its driver for a flush")
        return (session, client)
    }

    func testIdleConnectionIsPingedAndKeptWhenThePeerAnswers() {
        let (session, client) = silentUntilPing()
        exchange(client, session)  // the PING goes out, nghttp2's ACK comes back
        XCTAssertEqual(client.pingsReceived, 1)
        clock.advance(byMillis: 10_000)
        XCTAssertEqual(tick(session), .proceed, "a peer that answered the PING keeps its connection")
        XCTAssertEqual(context.stats.connectionTimeouts, 0)
    }

    func testIdleConnectionThatIgnoresThePingIsClosed() {
        let (session, client) = silentUntilPing()
        client.input(serverOutput(session).bytes)  // the PING reaches the peer, which never answers
        XCTAssertEqual(client.pingsReceived, 1)
        assertTimesOut(session, after: 10_000, saying: "no answer to a PING")
    }

    // MARK: limits

    func testHeaderListOverTheLimitEndsTheConnectionWithEnhanceYourCalm() {
        makeContext { $0.http2.maxHeaderListBytes = 1024 }
        let (session, _) = openSession()
        let client = HTTP2TestClient()
        // Sent before the server's SETTINGS reach the client, so nghttp2 does not hold it back.
        client.request(Array("x".utf8), extraHeaders: [("x-padding", String(repeating: "p", count: 2000))])
        let action = exchange(client, session)
        guard case .closeWhenFlushed(let reason) = action else { return XCTFail("not refused: \(action)") }
        XCTAssertTrue(reason.contains("header list over 1024 bytes"), reason)
        XCTAssertEqual(client.goAwayCode, NGHTTP2_ENHANCE_YOUR_CALM.rawValue)
        XCTAssertEqual(context.stats.headerListViolations, 1)
        XCTAssertEqual(context.stats.protocolErrors, 1)
        XCTAssertEqual(context.stats.calls, 0, "the request never reached the handler")
    }

    func testHeaderListWithinTheLimitIsServed() {
        makeContext { $0.http2.maxHeaderListBytes = 1024 }
        let (session, _) = openSession()
        let client = HTTP2TestClient()
        let id = client.request(Array("x".utf8), extraHeaders: [("x-padding", String(repeating: "p", count: 500))])
        XCTAssertEqual(exchange(client, session), .proceed)
        XCTAssertEqual(client.streams[id]?.grpcStatus, 0)
        XCTAssertEqual(context.stats.headerListViolations, 0)
    }

    func testConnectionBufferBoundRefusesARequestWithResourceExhausted() {
        makeContext {
            $0.maxConnectionBufferBytes = 1_000
            $0.maxBufferBytes = 1 << 20
        }
        let (session, _) = openSession()
        let client = HTTP2TestClient()
        let big = client.request([UInt8](repeating: 7, count: 2_000))
        exchange(client, session)
        XCTAssertEqual(client.streams[big]?.grpcStatus, GRPCStatus.resourceExhausted.rawValue)
        XCTAssertEqual(context.stats.bufferRefusals, 1)
        XCTAssertEqual(context.heldBytes, 0, "a refused request holds nothing")
        // A request within the bound on the same connection is served.
        let small = client.request([UInt8](repeating: 7, count: 500))
        exchange(client, session)
        XCTAssertEqual(client.streams[small]?.grpcStatus, 0)
        XCTAssertEqual(client.streams[small]?.message.count, 500)
    }

    func testProcessBufferBoundCountsEveryConnection() {
        makeContext {
            $0.maxConnectionBufferBytes = 2_500
            $0.maxBufferBytes = 3_000
        }
        let (first, _) = openSession()
        let firstClient = HTTP2TestClient()
        firstClient.request(Array("never".utf8) + [UInt8](repeating: 1, count: 1_500))
        exchange(firstClient, first)
        XCTAssertEqual(handler.calls.count, 1)
        XCTAssertEqual(context.heldBytes, 5 + 5 + 1_500, "an unanswered request stays held")

        let (second, _) = openSession()
        let secondClient = HTTP2TestClient()
        let refused = secondClient.request([UInt8](repeating: 2, count: 1_600))
        exchange(secondClient, second)
        XCTAssertEqual(secondClient.streams[refused]?.grpcStatus, GRPCStatus.resourceExhausted.rawValue,
                       "within its connection's bound, but over the process's")
        XCTAssertEqual(context.currentStats.bufferRefusals, 1)

        handler.calls[0].respond(message: [])
        exchange(firstClient, first)
        XCTAssertEqual(context.heldBytes, 0)
        let retried = secondClient.request([UInt8](repeating: 2, count: 1_600))
        exchange(secondClient, second)
        XCTAssertEqual(secondClient.streams[retried]?.grpcStatus, 0)
    }

    // MARK: deadlines

    func testCallDeadlineFromGRPCTimeout() {
        makeContext { $0.streamTimeoutMillis = 10_000 }
        let (session, _) = openSession()
        let client = HTTP2TestClient()
        let start = clock.nowMillis
        let id = client.request(Array("never".utf8), grpcTimeout: "100m")
        exchange(client, session)
        XCTAssertEqual(handler.calls.first?.deadlineMillis, start + 100)
        XCTAssertEqual(clock.nextDueMillis, start + 100, "one timer, armed for the call's deadline")
        clock.advance(byMillis: 99)
        exchange(client, session)
        XCTAssertNil(client.streams[id]?.grpcStatus)
        clock.advance(byMillis: 1)
        exchange(client, session)
        XCTAssertEqual(client.streams[id]?.grpcStatus, GRPCStatus.deadlineExceeded.rawValue)
        XCTAssertEqual(context.stats.deadlineExceeded, 1)
        XCTAssertTrue(handler.calls[0].isCancelled, "a late answer is dropped")
    }

    func testCallWithoutGRPCTimeoutGetsTheStreamTimeout() {
        makeContext { $0.streamTimeoutMillis = 10_000 }
        let (session, _) = openSession()
        let client = HTTP2TestClient()
        let start = clock.nowMillis
        let id = client.request(Array("never".utf8))
        exchange(client, session)
        XCTAssertEqual(handler.calls.first?.deadlineMillis, start + 10_000)
        // A grpc-timeout longer than the stream's own bound does not extend it.
        let long = client.request(Array("never".utf8), grpcTimeout: "1H")
        exchange(client, session)
        XCTAssertEqual(handler.calls.last?.deadlineMillis, start + 10_000)
        clock.advance(byMillis: 10_000)
        exchange(client, session)
        XCTAssertEqual(client.streams[id]?.grpcStatus, GRPCStatus.deadlineExceeded.rawValue)
        XCTAssertEqual(client.streams[long]?.grpcStatus, GRPCStatus.deadlineExceeded.rawValue)
        XCTAssertEqual(context.heldBytes, 0)
    }

    func testStreamWhoseWindowIsClosedStopsProducingAndTimesOut() {
        makeContext { $0.streamTimeoutMillis = 10_000 }
        let (session, _) = openSession()
        let client = HTTP2TestClient(initialWindowSize: 0)
        let id = client.request([UInt8](repeating: 9, count: 1_000))
        exchange(client, session)
        XCTAssertEqual(client.streams[id]?.header(":status"), "200", "the HEADERS go out")
        XCTAssertEqual(client.streams[id]?.data.count ?? 0, 0, "no DATA into a closed window")
        XCTAssertEqual(context.heldBytes, 1_005, "the answer is held while the window stays shut")
        XCTAssertTrue(serverOutput(session).bytes.isEmpty, "nothing more is produced")

        clock.advance(byMillis: 9_999)
        XCTAssertEqual(tick(session), .proceed)
        XCTAssertEqual(context.stats.streamTimeouts, 0)
        clock.advance(byMillis: 1)
        XCTAssertEqual(tick(session), .proceed)
        exchange(client, session)
        XCTAssertEqual(context.stats.streamTimeouts, 1)
        XCTAssertEqual(context.heldBytes, 0, "what the stream held is released")
        XCTAssertEqual(client.streams[id]?.closedCode, NGHTTP2_CANCEL.rawValue)
        XCTAssertEqual(session.openStreams, 0)
    }

    func testPeerThatReadsNoneOfItsOutputIsClosed() {
        makeContext { $0.streamTimeoutMillis = 10_000 }
        let (session, _) = openSession()
        exchange(HTTP2TestClient(), session)
        // The driver reports output waiting for the socket since the last write completed.
        session.writeCompleted(now: clock.nowMillis)
        session.writeInFlight = true
        assertTimesOut(session, after: 10_000, saying: "read none of our output")
    }

    // MARK: resets and cancellation

    func testResetStreamCancelsTheCallAndReleasesItsBytes() {
        makeContext()
        let (session, _) = openSession()
        let client = HTTP2TestClient()
        let id = client.request(Array("never".utf8) + [UInt8](repeating: 0, count: 100))
        exchange(client, session)
        XCTAssertEqual(context.heldBytes, 110)
        client.reset(id)
        exchange(client, session)
        XCTAssertTrue(handler.calls[0].isCancelled)
        XCTAssertEqual(context.stats.cancelled, 1)
        XCTAssertEqual(context.heldBytes, 0)
        XCTAssertEqual(session.openStreams, 0)
        handler.calls[0].respond(message: [1])  // dropped: nothing is sent, nothing counted
        XCTAssertTrue(serverOutput(session).bytes.isEmpty)
        XCTAssertEqual(context.stats.answers[0], 0)
    }

    /// `onCancel` arises inside nghttp2's stream-close callback; user code there must not run until nghttp2
    /// has returned (it may answer other calls, which submits to the same session and asks for a flush).
    func testCancelCallbackRunsOutsideNGHTTP2AndMayStartNewWork() {
        makeContext()
        let (session, driver) = openSession()
        let client = HTTP2TestClient()
        let first = client.request(Array("never-1".utf8))
        let second = client.request(Array("never-2".utf8))
        exchange(client, session)
        XCTAssertEqual(handler.calls.count, 2)
        var wakes = 0
        context.wakeDriver = { wakes += 1 }
        var ranInsideNGHTTP2: Bool?
        handler.calls[0].onCancel = { [unowned self] in
            ranInsideNGHTTP2 = session.isInsideNGHTTP2
            self.handler.calls[1].respond(message: Array("answered from onCancel".utf8))
        }
        client.reset(first)
        exchange(client, session)
        XCTAssertTrue(handler.calls[0].isCancelled, "cancelled at once")
        XCTAssertNil(ranInsideNGHTTP2, "onCancel ran inside the read that reset the stream")
        XCTAssertEqual(wakes, 1, "the driver is asked to run the deferred work")

        let flushesBefore = driver.flushRequests
        context.runDeferredWork()
        XCTAssertEqual(ranInsideNGHTTP2, false)
        XCTAssertEqual(driver.flushRequests, flushesBefore + 1, "the new answer asks for a flush")
        exchange(client, session)
        XCTAssertEqual(client.streams[second]?.grpcStatus, 0)
        XCTAssertEqual(client.streams[second]?.message, Array("answered from onCancel".utf8))
    }

    func testClosingTheConnectionCancelsItsCallsAndDefersTheirCallbacks() {
        makeContext()
        let (session, _) = openSession()
        let client = HTTP2TestClient()
        client.request(Array("never".utf8))
        exchange(client, session)
        var cancelled = 0
        handler.calls[0].onCancel = { cancelled += 1 }
        session.closed(reason: "connection closed by peer")
        XCTAssertTrue(handler.calls[0].isCancelled)
        XCTAssertEqual(cancelled, 0)
        context.runDeferredWork()
        XCTAssertEqual(cancelled, 1)
        XCTAssertEqual(context.heldBytes, 0)
    }

    // MARK: authentication

    func testUnauthenticatedConnectionsOverTheLimitCloseTheOldest() {
        let token = Array("s3cret".utf8)
        makeContext {
            $0.peerToken = token
            $0.maxUnauthenticatedConnections = 2
        }
        let (first, firstDriver) = openSession()
        clock.advance(byMillis: 1)
        let (second, secondDriver) = openSession()
        clock.advance(byMillis: 1)
        // The second one authenticates with a request carrying the token.
        let client = HTTP2TestClient()
        let id = client.request(Array("hi".utf8), extraHeaders: [("authorization", "Bearer s3cret")])
        exchange(client, second)
        XCTAssertEqual(client.streams[id]?.grpcStatus, 0)
        XCTAssertTrue(second.isAuthenticated)
        XCTAssertEqual(context.unauthenticated.count, 1)

        let (third, _) = openSession()
        XCTAssertNil(firstDriver.closedReason, "two unauthenticated connections are allowed")
        let (_, _) = openSession()
        XCTAssertNotNil(firstDriver.closedReason, "the oldest unauthenticated connection makes room")
        XCTAssertTrue(first.isClosed)
        XCTAssertNil(secondDriver.closedReason, "an authenticated connection is never evicted")
        XCTAssertFalse(third.isClosed)
        XCTAssertEqual(context.stats.unauthenticatedEvictions, 1)
        XCTAssertEqual(context.currentStats.unauthenticatedConnections, 2)
    }

    func testRequestWithoutThePeerTokenIsRefusedBeforeItsMessageIsRead() {
        makeContext { $0.peerToken = Array("s3cret".utf8) }
        let (session, _) = openSession()
        let client = HTTP2TestClient()
        let missing = client.request([UInt8](repeating: 0, count: 10_000))
        let wrong = client.request(Array("x".utf8), extraHeaders: [("authorization", "Bearer nope")])
        exchange(client, session)
        XCTAssertEqual(client.streams[missing]?.grpcStatus, GRPCStatus.unauthenticated.rawValue)
        XCTAssertEqual(client.streams[wrong]?.grpcStatus, GRPCStatus.unauthenticated.rawValue)
        XCTAssertEqual(context.stats.unauthenticatedRequests, 2)
        XCTAssertEqual(handler.calls.count, 0)
        XCTAssertEqual(context.heldBytes, 0)
        XCTAssertFalse(session.isAuthenticated)
    }

    // MARK: pooled streams and calls

    /// A stream whose request completed, was reset and whose object was reused for a new stream, all in one
    /// read, must not be dispatched by its first use's entry: that would hand the handler the new stream's
    /// message before its END_STREAM (here: a unary stream that goes on to send a second message).
    func testStreamReusedWithinOneReadIsNotDispatchedByItsOldEntry() {
        makeContext()
        let (session, _) = openSession()
        let client = HTTP2TestClient()
        exchange(client, session)
        // A first stream, so that one closed stream is in the pool before the read under test.
        let warm = client.request(Array("warm".utf8))
        exchange(client, session)
        XCTAssertEqual(client.streams[warm]?.grpcStatus, 0)
        XCTAssertEqual(session.pooledStreams, 1)

        let first = client.request(Array("first".utf8))
        var read = client.output()
        client.reset(first)
        let second = client.request(nil)
        read += client.output()
        client.send(HTTP2TestClient.prefixed(Array("second".utf8)), on: second, endStream: false)
        read += client.output()
        let action = read.withUnsafeBytes { session.receive($0, now: clock.nowMillis) }
        XCTAssertEqual(action, .proceed)
        XCTAssertEqual(handler.calls.count, 1, "only the warm-up call: the reset one is gone, the reused one open")

        client.send(HTTP2TestClient.prefixed(Array("third".utf8)), on: second, endStream: true)
        exchange(client, session)
        XCTAssertEqual(handler.calls.count, 1, "a unary stream with two messages never reaches the handler")
        XCTAssertEqual(client.streams[second]?.grpcStatus, GRPCStatus.unimplemented.rawValue)
    }

    /// Streams and calls are reused: each answer carries its own request's bytes whatever the one before held
    /// (longer or shorter), and a call the handler keeps is never reused under it.
    func testReusedStreamsAndCallsAnswerEachRequestWithItsOwnBytes() {
        let echo = HTTP2EchoHandler()
        clock = ManualScheduler()
        context = GRPCServerContext(settings: GRPCServerSettings(), handler: echo, abuse: AbuseLog(), scheduler: clock)
        let (session, _) = openSession()
        let client = HTTP2TestClient()
        exchange(client, session)
        let messages = ["a much longer first request message", "short", "", "mid-size one", "x"]
        for text in messages {
            let id = client.request(Array(text.utf8))
            exchange(client, session)
            XCTAssertEqual(client.streams[id]?.grpcStatus, 0)
            XCTAssertEqual(client.streams[id].map { String(decoding: $0.message, as: UTF8.self) }, text)
        }
        XCTAssertEqual(echo.seen, messages)
        XCTAssertEqual(session.pooledStreams, 1, "one stream object served every request")
        XCTAssertEqual(echo.reusedCalls, messages.count - 1, "one call object served every request")

        echo.keep = true
        let kept = client.request(Array("kept".utf8))
        exchange(client, session)
        let next = client.request(Array("next".utf8))
        exchange(client, session)
        XCTAssertEqual(client.streams[kept].map { String(decoding: $0.message, as: UTF8.self) }, "kept")
        XCTAssertEqual(client.streams[next].map { String(decoding: $0.message, as: UTF8.self) }, "next")
        XCTAssertEqual(echo.kept.map { String(decoding: $0.message, as: UTF8.self) }, ["kept", "next"],
                       "a call the handler keeps keeps its request")
        XCTAssertFalse(echo.kept[0] === echo.kept[1])
        XCTAssertEqual(context.heldBytes, 0)
    }
}

/// Echoes every call at once and keeps nothing of it (unless `keep`), so the session may reuse its calls.
final class HTTP2EchoHandler: GRPCServiceHandler {
    var seen: [String] = []
    /// Calls that were the very object of the call before (held weakly: a freed one is not counted).
    var reusedCalls = 0
    private weak var lastCall: GRPCServerCall?
    var keep = false
    var kept: [GRPCServerCall] = []

    func handle(_ call: GRPCServerCall) {
        seen.append(String(decoding: call.message, as: UTF8.self))
        if let last = lastCall, last === call { reusedCalls += 1 }
        lastCall = call
        if keep { kept.append(call) }
        call.respond(message: call.message)
    }
}
