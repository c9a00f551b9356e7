import Testing

@testable import EPCSCF

/// The eP-CSCF's one piece of dialog state: which gateway session each dialog side holds.
@Suite struct MediaLegsTests {
    @Test func aCallBetweenTwoWICsHasALegForEachSideAndEachGoesWithItsFlow() {
        let legs = MediaLegs()
        legs.add(.init(callID: "c1", flowToken: "caller"), gatewayCallID: "c1~orig")
        legs.add(.init(callID: "c1", flowToken: "callee"), gatewayCallID: "c1~term")
        legs.add(.init(callID: "c2", flowToken: "caller"), gatewayCallID: "c2~orig")
        #expect(legs.gatewayCallID(.init(callID: "c1", flowToken: "callee")) == "c1~term")
        #expect(Set(legs.removeAll(flowToken: "caller")) == ["c1~orig", "c2~orig"])
        #expect(legs.count == 1)
        #expect(legs.remove(.init(callID: "c1", flowToken: "callee")) == "c1~term")
        #expect(legs.count == 0)
    }

    /// Sessions the gateway ended by itself (its media timeout) leave the table.
    @Test func theTableFollowsWhatTheGatewayStillHolds() {
        let legs = MediaLegs()
        for n in 0..<5 { legs.add(.init(callID: "c\(n)", flowToken: "f"), gatewayCallID: "c\(n)~orig") }
        #expect(legs.retain(only: ["c1~orig", "c3~orig", "unrelated"]) == 3)
        #expect(legs.count == 2)
        #expect(legs.gatewayCallID(.init(callID: "c3", flowToken: "f")) == "c3~orig")
        #expect(legs.gatewayCallID(.init(callID: "c0", flowToken: "f")) == nil)
    }

    /// A late offer's answer comes in the ACK once; a retransmitted ACK finds nothing to answer.
    @Test func anAnswerInTheACKIsTakenOnce() {
        let legs = MediaLegs()
        let key = MediaLegs.Key(callID: "c1", flowToken: "f")
        #expect(legs.takeAnswerInACK(key) == nil)
        legs.expectAnswerInACK(key)  // no leg yet: nothing to expect
        #expect(legs.takeAnswerInACK(key) == nil)
        legs.add(key, gatewayCallID: "c1~orig")
        legs.expectAnswerInACK(key)
        #expect(legs.takeAnswerInACK(key) == "c1~orig")
        #expect(legs.takeAnswerInACK(key) == nil)
        #expect(legs.gatewayCallID(key) == "c1~orig")
    }
}
