import XCTest
@testable import SpringCacheUV

/// The cluster's failure handling as a value: which failures drop a peer, when it is probed, when it is back.
final class PeerHealthTests: XCTestCase {
    private let refused = GRPCCallError(status: .unavailable, message: "connection refused")
    private let timedOut = GRPCCallError(status: .deadlineExceeded, message: "deadline exceeded")

    private func health(failuresToDrop: Int = 1, members: Set<String> = ["a", "b", "c"]) -> PeerHealth {
        var h = PeerHealth(selfName: "a", settings: .init(failuresToDrop: failuresToDrop, probeIntervalMillis: 1_000))
        XCTAssertEqual(h.membersChanged(members), [])
        return h
    }

    func testWhichFailuresArePeerFailures() {
        let cases: [(GRPCCallError, PeerHealth.Verdict)] = [
            // Failures on our side that mean the peer cannot be used.
            (GRPCCallError(status: .unavailable, message: "refused"), .peerFailed),
            (GRPCCallError(status: .deadlineExceeded, message: "no answer"), .peerFailed),
            (GRPCCallError(status: .cancelled, message: "reset"), .peerFailed),
            (GRPCCallError(status: .internal, message: "broken response"), .peerFailed),
            (GRPCCallError(status: .unimplemented, message: "not gRPC"), .peerFailed),
            // The peer refusing our credentials: unusable, though it answered.
            (GRPCCallError(status: .unauthenticated, message: "", fromPeer: true), .peerFailed),
            (GRPCCallError(status: .permissionDenied, message: "", fromPeer: true), .peerFailed),
            // Any other status the peer sent: an answer from a live peer.
            (GRPCCallError(status: .deadlineExceeded, message: "origin slow", fromPeer: true), .answered),
            (GRPCCallError(status: .unavailable, message: "origin down", fromPeer: true), .answered),
            (GRPCCallError(status: .notFound, message: "", fromPeer: true), .answered),
            (GRPCCallError(status: .unknown, message: "k not exist", fromPeer: true), .answered),
            (GRPCCallError(status: .unimplemented, message: "no Delete", fromPeer: true), .answered),
            // The caller's own error (issue 10): a value over our message limit never reached the peer.
            (GRPCCallError(status: .resourceExhausted, message: "request too large"), .callerError),
        ]
        for (error, verdict) in cases {
            XCTAssertEqual(PeerHealth.verdict(on: error), verdict, "\(error) fromPeer=\(error.fromPeer)")
        }
    }

    func testATransportFailureDropsAtOnceAndStartsTheProbeTimer() {
        var h = health()
        XCTAssertEqual(h.callFailed("b", refused), [.drop("b"), .startProbeTimer(everyMillis: 1_000)])
        XCTAssertEqual(h.down, ["b"])
        // A second peer going down does not start the timer again; a dropped peer is not dropped twice.
        XCTAssertEqual(h.callFailed("c", timedOut), [.drop("c")])
        XCTAssertEqual(h.callFailed("b", refused), [])
        XCTAssertEqual(h.down, ["b", "c"])
    }

    func testDropsAfterTheConfiguredFailuresInARowAndAnAnswerResetsTheCount() {
        var h = health(failuresToDrop: 3)
        XCTAssertEqual(h.callFailed("b", refused), [])
        XCTAssertEqual(h.callFailed("b", timedOut), [])
        XCTAssertEqual(h.failuresInARow(of: "b"), 2)
        // Any answer — a value, or a status the peer sent — proves it alive and starts the count again.
        XCTAssertEqual(h.callFailed("b", GRPCCallError(status: .notFound, message: "", fromPeer: true)), [])
        XCTAssertEqual(h.failuresInARow(of: "b"), 0)
        XCTAssertEqual(h.callFailed("b", refused), [])
        XCTAssertEqual(h.callSucceeded("b"), [])
        XCTAssertEqual(h.callFailed("b", refused), [])
        XCTAssertEqual(h.callFailed("b", refused), [])
        XCTAssertEqual(h.down, [])
        XCTAssertEqual(h.callFailed("b", refused), [.drop("b"), .startProbeTimer(everyMillis: 1_000)])
        XCTAssertEqual(h.down, ["b"])
        XCTAssertEqual(h.failuresInARow(of: "b"), 0)
    }

    func testCallerErrorsAndAnswersNeverDropAPeer() {
        var h = health()
        let tooLarge = GRPCCallError(status: .resourceExhausted, message: "request of 5000000 bytes exceeds the limit")
        let originDown = GRPCCallError(status: .unavailable, message: "origin unreachable", fromPeer: true)
        for _ in 0..<10 {
            XCTAssertEqual(h.callFailed("b", tooLarge), [])
            XCTAssertEqual(h.callFailed("b", originDown), [])
        }
        XCTAssertEqual(h.down, [])
        // A caller's error does not reset the count of real failures either: it says nothing about the peer.
        var counting = health(failuresToDrop: 2)
        XCTAssertEqual(counting.callFailed("b", refused), [])
        XCTAssertEqual(counting.callFailed("b", tooLarge), [])
        XCTAssertEqual(counting.callFailed("b", refused), [.drop("b"), .startProbeTimer(everyMillis: 1_000)])
    }

    func testOnlyMembersOtherThanThisNodeAreDropped() {
        var h = health()
        XCTAssertEqual(h.callFailed("a", refused), [], "this node")
        XCTAssertEqual(h.callFailed("z", refused), [], "not a member (it left while the call was in flight)")
        XCTAssertEqual(h.down, [])
    }

    func testEachTickProbesEveryDroppedPeerWithoutAProbeInFlight() {
        var h = health()
        _ = h.callFailed("c", refused)
        _ = h.callFailed("b", refused)
        XCTAssertEqual(h.probeTimerFired(), [.probe("b"), .probe("c")])
        // Probes still in flight are not sent again.
        XCTAssertEqual(h.probeTimerFired(), [])
        XCTAssertEqual(h.probeFinished("b", .failure(refused)), [])
        XCTAssertEqual(h.down, ["b", "c"])
        XCTAssertEqual(h.probeTimerFired(), [.probe("b")])
    }

    func testAnyAnswerToAProbeReadmitsAndTheLastReadmissionStopsTheTimer() {
        var h = health()
        _ = h.callFailed("b", refused)
        _ = h.callFailed("c", refused)
        _ = h.probeTimerFired()
        // Our probe asks for the empty key: NOT_FOUND is the normal answer, and proves the peer alive.
        let notFound = GRPCCallError(status: .notFound, message: "empty key", fromPeer: true)
        XCTAssertEqual(h.probeFinished("b", .failure(notFound)), [.readmit("b")])
        XCTAssertEqual(h.probeFinished("c", .success([])), [.readmit("c"), .stopProbeTimer])
        XCTAssertEqual(h.down, [])
        XCTAssertEqual(h.probeTimerFired(), [])
    }

    func testSetpeerReadmitsADroppedPeerAndALateProbeChangesNothing() {
        var h = health()
        XCTAssertEqual(h.readmitRequested("b"), [], "already up")
        _ = h.callFailed("b", refused)
        XCTAssertEqual(h.probeTimerFired(), [.probe("b")])
        XCTAssertEqual(h.readmitRequested("b"), [.readmit("b"), .stopProbeTimer])
        XCTAssertEqual(h.probeFinished("b", .success([])), [], "the probe sent before /setpeer")
        XCTAssertEqual(h.down, [])
    }

    func testAMemberThatLeavesWhileDroppedIsForgottenAndComesBackUp() {
        var h = health()
        _ = h.callFailed("b", refused)
        _ = h.callFailed("c", refused)
        XCTAssertEqual(h.probeTimerFired(), [.probe("b"), .probe("c")])
        // b leaves (its etcd keys are gone); c stays dropped and probed.
        XCTAssertEqual(h.membersChanged(["a", "c"]), [])
        XCTAssertEqual(h.down, ["c"])
        XCTAssertEqual(h.probeFinished("b", .success([])), [], "a probe answered by a departed member")
        // c leaves too: nothing is down, so the timer stops.
        XCTAssertEqual(h.membersChanged(["a"]), [.stopProbeTimer])
        // Both come back: up, with a clean count.
        XCTAssertEqual(h.membersChanged(["a", "b", "c"]), [])
        XCTAssertEqual(h.down, [])
        XCTAssertEqual(h.probeTimerFired(), [])
    }

    func testAMemberListThatKeepsADroppedPeerKeepsItDropped() {
        var h = health()
        _ = h.callFailed("b", refused)
        XCTAssertEqual(h.membersChanged(["a", "b", "c", "d"]), [])
        XCTAssertEqual(h.down, ["b"])
        XCTAssertEqual(h.probeTimerFired(), [.probe("b")])
    }
}
