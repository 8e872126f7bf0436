import XCTest
@testable import SpringCacheUV

/// The HTTP/1.1 connection state without sockets: events in, actions out, time from a `ManualClock`.
final class HTTP1ConnectionStateTests: XCTestCase {
    private var clock = ManualClock()
    private var config = HTTPServerConfig()

    override func setUp() {
        clock = ManualClock()
        config = HTTPServerConfig()
        config.headerTimeoutMillis = 10_000
        config.idleTimeoutMillis = 60_000
        config.lingerMillis = 2_000
        config.maxOutputBytesPerConnection = 1_000
        config.maxQueuedOutputBytes = 10_000
    }

    private func makeState() -> HTTP1ConnectionState {
        HTTP1ConnectionState(config: config, now: clock.nowMillis)
    }

    private func parse(_ state: inout HTTP1ConnectionState, _ text: String) -> HTTP1ConnectionState.ParseStep {
        Array(text.utf8).withUnsafeBytes { state.parse($0, now: clock.nowMillis) }
    }

    /// Parses one whole request and returns whether the connection stays open after it.
    private func takeRequest(_ state: inout HTTP1ConnectionState, _ text: String,
                             file: StaticString = #filePath, line: UInt = #line) -> Bool {
        guard case .request(_, let consumed, let keepAlive) = parse(&state, text) else {
            XCTFail("not a whole request: \(text)", file: file, line: line)
            return false
        }
        XCTAssertEqual(consumed, text.utf8.count, file: file, line: line)
        return keepAlive
    }

    private let get = "GET /api/get?key=Tom HTTP/1.1\r\nHost: x\r\n\r\n"

    /// One keep-alive request answered at once and its answer taken by the kernel: the connection is idle.
    private func answerOneRequest(_ state: inout HTTP1ConnectionState, file: StaticString = #filePath,
                                  line: UInt = #line) {
        XCTAssertTrue(takeRequest(&state, get, file: file, line: line), file: file, line: line)
        state.sent(queued: 0, now: clock.nowMillis)
        XCTAssertEqual(state.batchEnded(bufferedInput: false, now: clock.nowMillis), .none, file: file, line: line)
    }

    // MARK: pipelining and deferred answers

    func testPipelinedRequestsWaitBehindADeferredAnswerAndAreTakenInOrderAfterIt() throws {
        var state = makeState()
        let two = get + "GET /api/get?key=Sam HTTP/1.1\r\nHost: x\r\n\r\n"
        let bytes = Array(two.utf8)
        var offset = 0
        try bytes.withUnsafeBytes { all in
            guard case .request(let first, let consumed, true) = state.parse(all, now: clock.nowMillis) else {
                return XCTFail("first request not parsed")
            }
            XCTAssertEqual(String(decoding: all[first.query!], as: UTF8.self), "key=Tom")
            offset = consumed
            state.answerDeferred()
            // The second request is not taken while the first waits for its answer, and the socket is not read.
            XCTAssertFalse(state.takesRequests)
            XCTAssertFalse(state.wantsToRead)
            XCTAssertTrue(state.awaitsAnswer)
            XCTAssertEqual(state.batchEnded(bufferedInput: true, now: clock.nowMillis), .none)
            XCTAssertEqual(state.deadlineMillis, .max, "no timeout runs while the handler answers")

            clock.advance(byMillis: 120_000)
            XCTAssertEqual(state.deadlinePassed(now: clock.nowMillis), .none)
            XCTAssertTrue(state.answeredLater())
            XCTAssertTrue(state.takesRequests)
            let rest = UnsafeRawBufferPointer(rebasing: all[offset...])
            guard case .request(let second, let used, true) = state.parse(rest, now: clock.nowMillis) else {
                return XCTFail("second request not parsed after the deferred answer")
            }
            XCTAssertEqual(used, rest.count)
            XCTAssertEqual(String(decoding: rest[try XCTUnwrap(second.query)], as: UTF8.self), "key=Sam")
        }
        XCTAssertEqual(state.batchEnded(bufferedInput: false, now: clock.nowMillis), .none)
        XCTAssertEqual(state.deadlineMillis, clock.nowMillis + 60_000, "idle again after the last answer")
    }

    func testADeferredAnswerForAClosedConnectionIsDropped() {
        var state = makeState()
        XCTAssertTrue(takeRequest(&state, get))
        state.answerDeferred()
        XCTAssertEqual(state.close(), .close)
        XCTAssertFalse(state.answeredLater(), "the late answer has no connection to go to")
    }

    func testConnectionCloseDeferredThenLingersOnceAnsweredAndWritten() {
        var state = makeState()
        XCTAssertFalse(takeRequest(&state, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"))
        state.answerDeferred()
        XCTAssertEqual(state.phase, .finishing(awaitingAnswer: true))
        XCTAssertEqual(state.batchEnded(bufferedInput: false, now: clock.nowMillis), .none)
        XCTAssertTrue(state.answeredLater())
        state.sent(queued: 0, now: clock.nowMillis)
        XCTAssertEqual(state.batchEnded(bufferedInput: false, now: clock.nowMillis), .linger)
    }

    // MARK: 100-continue

    func testExpectContinueAsksForTheBodyOnceThenTakesTheRequest() {
        var state = makeState()
        let head = "PUT /v1/cache/scores/k HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n"
        XCTAssertEqual(parse(&state, head), .needMore(sendContinue: true))
        XCTAssertEqual(parse(&state, head + "ab"), .needMore(sendContinue: false), "100 Continue is sent once")
        XCTAssertTrue(takeRequest(&state, head + "abcde"))
        XCTAssertEqual(parse(&state, "POST /api/set HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"),
                       .needMore(sendContinue: false), "no 100 Continue before the head is complete")
    }

    func testExpectContinueFromAnHTTP10ClientIsIgnored() {
        var state = makeState()
        let head = "PUT /v1/cache/scores/k HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n"
        XCTAssertEqual(parse(&state, head), .needMore(sendContinue: false))
    }

    // MARK: lingering close and end of input

    func testLastAnswerLingersAfterItIsWrittenThenClosesAtTheLingerDeadline() {
        var state = makeState()
        XCTAssertFalse(takeRequest(&state, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"))
        XCTAssertFalse(state.takesRequests, "nothing after the last answer is taken")
        XCTAssertFalse(state.wantsToRead)
        state.sent(queued: 300, now: clock.nowMillis)
        XCTAssertEqual(state.batchEnded(bufferedInput: false, now: clock.nowMillis), .none,
                       "FIN waits until the answer is written")
        clock.advance(byMillis: 5)
        XCTAssertEqual(state.writeCompleted(queued: 0, bufferedInput: false, now: clock.nowMillis), .linger)
        XCTAssertEqual(state.phase, .lingering)
        XCTAssertTrue(state.wantsToRead, "a lingering connection reads and drops what the client still sends")
        XCTAssertEqual(state.deadlineMillis, clock.nowMillis + 2_000)
        clock.advance(byMillis: 1_999)
        XCTAssertEqual(state.deadlinePassed(now: clock.nowMillis), .none)
        clock.advance(byMillis: 1)
        XCTAssertEqual(state.deadlinePassed(now: clock.nowMillis), .close)
        XCTAssertTrue(state.isClosed)
    }

    func testLingeringEndsWhenTheClientCloses() {
        var state = makeState()
        _ = parse(&state, "GET / HTTP/1.1\r\n\r\n")  // no Host: a 400, the last answer
        state.sent(queued: 0, now: clock.nowMillis)
        XCTAssertEqual(state.batchEnded(bufferedInput: false, now: clock.nowMillis), .linger)
        XCTAssertEqual(state.inputEnded(eof: true), .close)
    }

    func testParseErrorIsTheLastAnswer() {
        var state = makeState()
        guard case .error(let error) = parse(&state, "GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        else { return XCTFail("chunked accepted") }
        XCTAssertEqual(error.status, 411)
        XCTAssertEqual(state.phase, .finishing(awaitingAnswer: false))
    }

    func testHalfCloseAfterRequestsStillGetsTheAnswersThenLingers() {
        var state = makeState()
        XCTAssertTrue(takeRequest(&state, get))
        state.sent(queued: 500, now: clock.nowMillis)
        XCTAssertEqual(state.batchEnded(bufferedInput: false, now: clock.nowMillis), .none)
        XCTAssertEqual(state.inputEnded(eof: true), .none, "the queued answer is still written")
        XCTAssertEqual(state.writeCompleted(queued: 0, bufferedInput: false, now: clock.nowMillis), .linger)
    }

    func testEndOfInputOfAnIdleConnectionOrAReadErrorClosesAtOnce() {
        var idle = makeState()
        XCTAssertEqual(idle.inputEnded(eof: true), .close)
        var busy = makeState()
        XCTAssertTrue(takeRequest(&busy, get))
        busy.sent(queued: 500, now: clock.nowMillis)
        XCTAssertEqual(busy.inputEnded(eof: false), .close, "a reset loses what was queued")
    }

    // MARK: back-pressure

    func testAClientThatDoesNotReadIsPausedAtItsOwnBoundAndResumedWhenItsAnswersMove() {
        var state = makeState()
        XCTAssertEqual(state.admission(batchBytes: 900, totalQueued: 0), .answer)
        XCTAssertEqual(state.admission(batchBytes: 1_200, totalQueued: 0), .flushFirst,
                       "this batch's answers go out before the bound is judged")
        state.sent(queued: 1_200, now: clock.nowMillis)
        XCTAssertEqual(state.admission(batchBytes: 0, totalQueued: 1_200), .pause)
        XCTAssertTrue(state.mustPause(totalQueued: 1_200))
        state.pauseForUnreadAnswers()
        XCTAssertFalse(state.wantsToRead)
        XCTAssertFalse(state.takesRequests)
        XCTAssertEqual(state.writeCompleted(queued: 0, bufferedInput: true, now: clock.nowMillis), .resume)
        XCTAssertTrue(state.takesRequests)
        XCTAssertTrue(state.wantsToRead)
    }

    func testAtTheProcessWideBoundOnlyConnectionsWithNothingQueuedGoOnUpToTheHardCap() {
        var idle = makeState()
        XCTAssertEqual(config.queuedOutputHardCap, 12_500)
        XCTAssertEqual(idle.admission(batchBytes: 0, totalQueued: 10_000), .answer,
                       "a client with nothing queued is not held back by those that do not read")
        XCTAssertEqual(idle.admission(batchBytes: 0, totalQueued: 12_500), .needRoom)

        var holding = makeState()
        holding.sent(queued: 100, now: clock.nowMillis)
        XCTAssertEqual(holding.admission(batchBytes: 0, totalQueued: 10_000), .pause)
        XCTAssertEqual(holding.admission(batchBytes: 0, totalQueued: 9_000), .answer)

        idle.waitForRoom(now: clock.nowMillis)
        XCTAssertTrue(idle.waitsForRoom)
        XCTAssertFalse(idle.wantsToRead)
        XCTAssertTrue(idle.roomAvailable(now: clock.nowMillis))
        XCTAssertTrue(idle.takesRequests)
        XCTAssertFalse(idle.roomAvailable(now: clock.nowMillis), "room is taken once")
    }

    func testAnswersTakenAtOnceMarkAReaderAndStallTimeIsFromTheFirstQueuedByte() {
        var state = makeState()
        XCTAssertFalse(state.answersTaken)
        state.sent(queued: 400, now: clock.nowMillis)
        let firstQueued = clock.nowMillis
        XCTAssertFalse(state.answersTaken)
        clock.advance(byMillis: 300)
        state.sent(queued: 800, now: clock.nowMillis)
        XCTAssertEqual(state.lastWriteMillis, firstQueued, "more bytes queued behind a stall do not hide it")
        XCTAssertEqual(state.writeCompleted(queued: 0, bufferedInput: false, now: clock.nowMillis), .none)
        state.sent(queued: 0, now: clock.nowMillis)
        XCTAssertTrue(state.answersTaken)
    }

    func testAQueueWrittenToTheEndMarksAReader() {
        // A large answer the kernel takes only in part: the client is not yet seen to read.
        var state = makeState()
        state.sent(queued: 900_000, now: clock.nowMillis)
        XCTAssertFalse(state.answersTaken)
        XCTAssertEqual(state.writeCompleted(queued: 300_000, bufferedInput: false, now: clock.nowMillis), .none)
        XCTAssertFalse(state.answersTaken, "part of it is still queued")
        // Everything queued went out: the client read what the kernel could not take at first.
        XCTAssertEqual(state.writeCompleted(queued: 0, bufferedInput: false, now: clock.nowMillis), .none)
        XCTAssertTrue(state.answersTaken)
    }

    // MARK: deadlines

    func testASilentConnectionGetsTheHeaderTimeoutFromAccept() {
        var state = makeState()
        XCTAssertEqual(state.deadlineKind, .header)
        clock.advance(byMillis: 9_999)
        XCTAssertEqual(state.deadlinePassed(now: clock.nowMillis), .none)
        clock.advance(byMillis: 1)
        XCTAssertEqual(state.deadlinePassed(now: clock.nowMillis), .requestTimeout)
        XCTAssertEqual(state.phase, .finishing(awaitingAnswer: false))
        // The 408 is written; then the connection lingers.
        state.sent(queued: 0, now: clock.nowMillis)
        XCTAssertEqual(state.batchEnded(bufferedInput: false, now: clock.nowMillis), .linger)
    }

    func testA408ThatCannotBeWrittenClosesAtTheNextTick() {
        var state = makeState()
        clock.advance(byMillis: 10_000)
        XCTAssertEqual(state.deadlinePassed(now: clock.nowMillis), .requestTimeout)
        state.sent(queued: 200, now: clock.nowMillis)
        XCTAssertEqual(state.batchEnded(bufferedInput: false, now: clock.nowMillis), .none)
        clock.advance(byMillis: 250)
        XCTAssertEqual(state.deadlinePassed(now: clock.nowMillis), .close)
    }

    func testIdleTimeoutBetweenRequestsAndHeaderTimeoutFromARequestsFirstByte() {
        var state = makeState()
        answerOneRequest(&state)
        XCTAssertEqual(state.deadlineKind, .idle)
        XCTAssertEqual(state.deadlineMillis, clock.nowMillis + 60_000)

        clock.advance(byMillis: 30_000)
        XCTAssertEqual(parse(&state, "GET /api/get?key=Tom HTTP/1.1\r\n"), .needMore(sendContinue: false))
        XCTAssertEqual(state.batchEnded(bufferedInput: true, now: clock.nowMillis), .none)
        XCTAssertEqual(state.deadlineKind, .header)
        XCTAssertEqual(state.deadlineMillis, clock.nowMillis + 10_000, "the header clock starts at the first byte")
        clock.advance(byMillis: 5_000)
        XCTAssertEqual(parse(&state, "GET /api/get?key=Tom HTTP/1.1\r\nHost: x\r\n"), .needMore(sendContinue: false))
        XCTAssertEqual(state.deadlineMillis, clock.nowMillis + 5_000, "more bytes do not restart it")
        clock.advance(byMillis: 5_000)
        XCTAssertEqual(state.deadlinePassed(now: clock.nowMillis), .requestTimeout)
    }

    func testAnIdleConnectionClosesAtTheIdleDeadline() {
        var state = makeState()
        answerOneRequest(&state)
        clock.advance(byMillis: 60_000)
        XCTAssertEqual(state.deadlinePassed(now: clock.nowMillis), .close)
    }

    func testTimeTheNodeDidNotReadIsNotCountedAgainstTheHeaderTimeout() {
        var state = makeState()
        clock.advance(byMillis: 4_000)
        state.waitForRoom(now: clock.nowMillis)
        XCTAssertEqual(state.deadlineMillis, .max)
        clock.advance(byMillis: 30_000)
        XCTAssertEqual(state.deadlinePassed(now: clock.nowMillis), .none)
        XCTAssertTrue(state.roomAvailable(now: clock.nowMillis))
        XCTAssertEqual(state.deadlineMillis, clock.nowMillis + 6_000, "what was left of the header timeout")
    }

    // MARK: drain on stop

    func testDrainClosesAnIdleConnectionAtOnce() {
        var state = makeState()
        XCTAssertEqual(state.drain(bufferedInput: false), .close)
    }

    func testDrainLetsTheAnswerInFlightFinishThenCloses() {
        var state = makeState()
        XCTAssertTrue(takeRequest(&state, get))
        state.sent(queued: 700, now: clock.nowMillis)
        XCTAssertEqual(state.drain(bufferedInput: false), .none)
        XCTAssertEqual(state.writeCompleted(queued: 0, bufferedInput: false, now: clock.nowMillis), .close)
    }

    func testDrainWaitsForADeferredAnswerAndTheNextRequestIsAnsweredWithClose() {
        var state = makeState()
        XCTAssertTrue(takeRequest(&state, get))
        state.answerDeferred()
        XCTAssertEqual(state.drain(bufferedInput: true), .none)
        XCTAssertTrue(state.answeredLater())
        XCTAssertFalse(takeRequest(&state, get), "a stopping node answers with Connection: close")
        XCTAssertEqual(state.phase, .finishing(awaitingAnswer: false))
    }

    func testDrainClosesALingeringConnection() {
        var state = makeState()
        XCTAssertFalse(takeRequest(&state, "GET / HTTP/1.0\r\n\r\n"))
        state.sent(queued: 0, now: clock.nowMillis)
        XCTAssertEqual(state.batchEnded(bufferedInput: false, now: clock.nowMillis), .linger)
        XCTAssertEqual(state.drain(bufferedInput: false), .close)
    }
}
