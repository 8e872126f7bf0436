import CNGHTTP2
import XCTest

@testable import SpringCacheUV

/// Answers each call with a message of the size its request names (decimal), filled with a pattern.
private final class SizedAnswerHandler: GRPCServiceHandler {
    func handle(_ call: GRPCServerCall) {
        let size = Int(String(decoding: call.message, as: UTF8.self)) ?? 0
        call.respond(message: SizedAnswerHandler.answer(size))
    }

    static func answer(_ size: Int) -> [UInt8] {
        if pattern.count < size {
            pattern = [UInt8](unsafeUninitializedCapacity: size) { buffer, count in
                for i in 0..<size { buffer[i] = UInt8(truncatingIfNeeded: i &* 31 &+ i >> 9) }
                count = size
            }
        }
        return Array(pattern[0..<size])
    }

    /// Built once (debug builds make a byte loop slow) and sliced for every answer.
    private static var pattern: [UInt8] = []
}

/// One HTTP/2 frame as it went over the wire.
private struct WireFrame {
    let type: UInt8
    let flags: UInt8
    let stream: Int32
    let payload: ArraySlice<UInt8>

    var endsStream: Bool { flags & UInt8(NGHTTP2_FLAG_END_STREAM.rawValue) != 0 }

    /// The frames in `bytes` (whole frames only: each pull below is a whole number of frames).
    static func parse(_ bytes: [UInt8], skipping prefix: Int = 0) -> [WireFrame] {
        var out: [WireFrame] = []
        var i = prefix
        while i + 9 <= bytes.count {
            let length = Int(bytes[i]) << 16 | Int(bytes[i + 1]) << 8 | Int(bytes[i + 2])
            let stream = Int32(bitPattern: UInt32(bytes[i + 5]) << 24 | UInt32(bytes[i + 6]) << 16
                               | UInt32(bytes[i + 7]) << 8 | UInt32(bytes[i + 8])) & 0x7FFF_FFFF
            out.append(WireFrame(type: bytes[i + 3], flags: bytes[i + 4], stream: stream,
                                 payload: bytes[(i + 9)..<(i + 9 + length)]))
            i += 9 + length
        }
        XCTAssertEqual(i, bytes.count, "output ends on a frame boundary")
        return out
    }

    static func uint32(_ p: ArraySlice<UInt8>, at offset: Int) -> UInt32 {
        let b = Array(p[(p.startIndex + offset)..<(p.startIndex + offset + 4)])
        return UInt32(b[0]) << 24 | UInt32(b[1]) << 16 | UInt32(b[2]) << 8 | UInt32(b[3])
    }
}

/// Issue 11: a large value crosses a peer connection in one round trip (the windows we advertise hold the
/// largest message), and the windows never pass the buffer bound they stand for. Our client session against
/// our server session, in memory; the bytes between them are parsed as frames, so what is checked is what
/// the other end sees on the wire.
final class HTTP2WindowTests: XCTestCase {
    private static let clientPreface = 24
    private var scheduler: ManualScheduler!
    private var context: GRPCServerContext!
    private var owner: GRPCTestClientOwner!
    private var server: GRPCServerSession!
    private var client: GRPCClientSession!

    override func tearDown() {
        if let server, !server.isClosed { server.closed(reason: "test over") }
        if let client, !client.isClosed { client.closed(reason: "test over") }
        server = nil
        client = nil
        context?.close()
        context = nil
    }

    /// Server and client with the windows a node gives them for `maxMessageBytes` and `bufferBytes`; the
    /// client advertises `clientFrameSize` (grpc-go stays at 16 KiB).
    private func connect(maxMessageBytes: Int, bufferBytes: Int, clientFrameSize: Int32? = nil) {
        var http2 = HTTP2Settings()
        http2.sizeWindows(maxMessageBytes: maxMessageBytes, bufferBytes: bufferBytes)
        var serverSettings = GRPCServerSettings()
        serverSettings.maxMessageBytes = maxMessageBytes
        serverSettings.maxConnectionBufferBytes = bufferBytes
        serverSettings.maxBufferBytes = 4 * bufferBytes
        serverSettings.http2 = http2
        scheduler = ManualScheduler()
        context = GRPCServerContext(settings: serverSettings, handler: SizedAnswerHandler(), abuse: AbuseLog(),
                                    scheduler: scheduler)
        server = GRPCServerSession(context: context)
        context.sessionOpened(server)
        XCTAssertEqual(server.open(), .proceed)
        owner = GRPCTestClientOwner()
        owner.settings.maxMessageBytes = maxMessageBytes
        owner.settings.http2 = http2
        if let clientFrameSize { owner.settings.http2.maxFrameSize = clientFrameSize }
        client = GRPCClientSession(owner: owner, nowMillis: scheduler.nowMillis)
        client.wasConnected = true
        client.open()
    }

    private func pull(_ session: HTTP2Session) -> [UInt8] {
        let out = HTTP2IOBuffers(readCapacity: 16)
        _ = session.produceOutput(into: &out.output, budget: .max)
        return Array(out.output.readable)
    }

    private func deliver(_ bytes: [UInt8], to session: HTTP2Session) {
        guard !bytes.isEmpty else { return }
        _ = bytes.withUnsafeBytes { session.receive($0, now: scheduler.nowMillis) }
    }

    /// The handshake both ways, until both are quiet; returns the client's first output (preface skipped).
    @discardableResult
    private func handshake() -> [WireFrame] {
        let first = pull(client)
        deliver(first, to: server)
        for _ in 0..<8 {
            let fromServer = pull(server)
            deliver(fromServer, to: client)
            let fromClient = pull(client)
            deliver(fromClient, to: server)
            if fromServer.isEmpty && fromClient.isEmpty { break }
        }
        XCTAssertEqual(owner.handshakes, 1)
        return WireFrame.parse(first, skipping: HTTP2WindowTests.clientPreface)
    }

    private func startCall(answerBytes: Int) -> GRPCClientCall {
        let call = GRPCClientCall(path: PeerService.getPath, request: Array(String(answerBytes).utf8), metadata: [],
                                  expiresAtMillis: scheduler.nowMillis + 2_000,
                                  maxMessageBytes: owner.settings.maxMessageBytes) { _ in }
        client.start(call, now: scheduler.nowMillis)
        return call
    }

    /// The requests go out, and the server's answer to them is pulled once, before anything of the client's
    /// comes back (no WINDOW_UPDATE can reach it): returns that one flight's frames.
    private func oneRoundTrip() -> [WireFrame] {
        deliver(pull(client), to: server)
        let flight = pull(server)
        deliver(flight, to: client)
        return WireFrame.parse(flight)
    }

    private func assertWholeAnswers(_ frames: [WireFrame], calls: [GRPCClientCall], size: Int, maxFrame: Int,
                                    file: StaticString = #filePath, line: UInt = #line) throws {
        let expected = SizedAnswerHandler.answer(size)
        for call in calls {
            let data = frames.filter { $0.type == UInt8(NGHTTP2_DATA.rawValue) && $0.stream == call.streamID }
            XCTAssertEqual(data.reduce(0) { $0 + $1.payload.count }, HTTP2Settings.grpcPrefixBytes + size,
                           "the whole message left in the first flight", file: file, line: line)
            XCTAssertTrue(frames.contains { $0.type == UInt8(NGHTTP2_HEADERS.rawValue) && $0.stream == call.streamID
                                            && $0.endsStream }, "the trailers too", file: file, line: line)
            XCTAssertLessThanOrEqual(data.map(\.payload.count).max() ?? 0, maxFrame, file: file, line: line)
            XCTAssertGreaterThanOrEqual(data.count, (HTTP2Settings.grpcPrefixBytes + size + maxFrame - 1) / maxFrame,
                                        file: file, line: line)
            let value = try XCTUnwrap(owner.results[call.streamID], "call completed", file: file, line: line).get()
            XCTAssertTrue(value == expected, "byte-exact", file: file, line: line)
        }
    }

    // MARK: one round trip

    func testA1MiBAnswerArrivesWholeInOneRoundTrip() throws {
        connect(maxMessageBytes: 4 << 20, bufferBytes: 16 << 20)
        handshake()
        let call = startCall(answerBytes: 1 << 20)
        let frames = oneRoundTrip()
        try assertWholeAnswers(frames, calls: [call], size: 1 << 20, maxFrame: Int(HTTP2Settings.defaultMaxFrameSize))
        XCTAssertEqual(frames.filter { $0.type == UInt8(NGHTTP2_DATA.rawValue) }.count, 17,
                       "1 MiB + 5 in 64 KiB frames (was 65 at 16 KiB)")
    }

    func testAnAnswerOfTheLargestMessageArrivesWholeInOneRoundTrip() throws {
        // --max-body-bytes 5MiB: the largest peer message is 5 MiB + head bytes + 1 KiB (NodeConfig).
        var config = NodeConfig()
        config.http.limits.maxBodyBytes = 5 << 20
        let largest = config.maxPeerMessageBytes
        connect(maxMessageBytes: largest, bufferBytes: max(16 << 20, 2 * largest))
        handshake()
        let call = startCall(answerBytes: largest)
        try assertWholeAnswers(oneRoundTrip(), calls: [call], size: largest,
                               maxFrame: Int(HTTP2Settings.defaultMaxFrameSize))
    }

    func testSeveralLargeAnswersAtOnceFitTheConnectionWindow() throws {
        connect(maxMessageBytes: 4 << 20, bufferBytes: 16 << 20)
        handshake()
        // Twice, so the second batch runs on what the client's WINDOW_UPDATEs gave back after the first.
        for _ in 0..<2 {
            let calls = (0..<6).map { _ in startCall(answerBytes: 1 << 20) }
            try assertWholeAnswers(oneRoundTrip(), calls: calls, size: 1 << 20,
                                   maxFrame: Int(HTTP2Settings.defaultMaxFrameSize))
            deliver(pull(client), to: server)
        }
    }

    func testAPeerAdvertising16KiBFramesGets16KiBFrames() throws {
        // grpc-go (springcache) never raises SETTINGS_MAX_FRAME_SIZE: our answers must keep to its default.
        connect(maxMessageBytes: 4 << 20, bufferBytes: 16 << 20, clientFrameSize: 16 << 10)
        handshake()
        let call = startCall(answerBytes: 1 << 20)
        try assertWholeAnswers(oneRoundTrip(), calls: [call], size: 1 << 20, maxFrame: 16 << 10)
    }

    // MARK: the windows stand for memory

    func testTheAdvertisedWindowsAreTheSizedOnes() throws {
        connect(maxMessageBytes: 4 << 20, bufferBytes: 16 << 20)
        let frames = handshake()
        let settings = try XCTUnwrap(frames.first { $0.type == UInt8(NGHTTP2_SETTINGS.rawValue) })
        var advertised: [UInt16: UInt32] = [:]
        for i in stride(from: 0, to: settings.payload.count, by: 6) {
            let p = settings.payload.startIndex + i
            advertised[UInt16(settings.payload[p]) << 8 | UInt16(settings.payload[p + 1])] =
                WireFrame.uint32(settings.payload, at: i + 2)
        }
        XCTAssertEqual(advertised[UInt16(NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE.rawValue)], UInt32((4 << 20) + 5))
        XCTAssertEqual(advertised[UInt16(NGHTTP2_SETTINGS_MAX_FRAME_SIZE.rawValue)], 64 << 10)
        let update = try XCTUnwrap(frames.first { $0.type == UInt8(NGHTTP2_WINDOW_UPDATE.rawValue) && $0.stream == 0 })
        XCTAssertEqual(Int(WireFrame.uint32(update.payload, at: 0)) + 65_535, 16 << 20,
                       "the connection window is the per-connection buffer bound")
    }

    func testSizedWindowsNeverPassTheBufferBound() {
        let mib = 1 << 20
        let cases: [(message: Int, buffer: Int)] = [
            (4 * mib, 16 * mib), (6 * mib, 16 * mib), (4 * mib, 4 * mib), (4 * mib, 4 * mib + 5),
            (64 * mib, 128 * mib), (3 << 30, 6 << 30), (1, 1), (0, 1 << 16),
        ]
        for (message, buffer) in cases {
            var h = HTTP2Settings()
            h.sizeWindows(maxMessageBytes: message, bufferBytes: buffer)
            let stream = Int(h.initialWindowSize), connection = Int(h.connectionWindowSize)
            let what = "message \(message), buffer \(buffer)"
            XCTAssertLessThanOrEqual(stream, buffer, what)
            XCTAssertLessThanOrEqual(connection, buffer, what)
            XCTAssertLessThanOrEqual(stream, connection, what)
            XCTAssertGreaterThan(stream, 0, what)
            XCTAssertLessThanOrEqual(connection, Int(Int32.max), what)
            // Whenever the bound leaves room, one window holds the whole message and its prefix.
            if message + 5 <= min(buffer, Int(Int32.max)) {
                XCTAssertEqual(stream, message + 5, what)
                XCTAssertEqual(connection, buffer, what)
            }
        }
    }
}
