// libFuzzer entry point for the SIP parser, the stream framer and every typed header view.
// Built by scripts/fuzz together with the SIPCore sources (no package, so it stays quick).

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzSIPParser(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = UnsafeBufferPointer(start: data, count: size)
    _ = try? SIPStreamFramer().nextFrame(bytes)
    for framing in [SIPFraming.message, .stream] {
        guard let message = try? SIPParser().parse(bytes, framing: framing) else {
            if let response = SIPResponse.errorResponse(forUnparseable: bytes, error: SIPParseError(.invalidHeader)) {
                _ = response.serialized()
            }
            continue
        }
        let h = message.headers
        _ = try? h.vias
        _ = try? h.from
        _ = try? h.to
        _ = try? h.cseq
        _ = try? h.contact
        _ = try? h.path
        _ = try? h.route
        _ = try? h.recordRoute
        _ = try? h.serviceRoute
        _ = try? h.pAssociatedURI
        _ = try? h.authorizations()
        _ = try? h.challenges()
        _ = try? h.pChargingVector
        _ = try? h.expires
        _ = try? h.maxForwards
        _ = h.pVisitedNetworkIDs
        _ = h.supported
        // What parses must serialize and parse again to the same message.
        let wire = message.serialized()
        guard let again = try? SIPParser().parse(wire, framing: .stream) else {
            preconditionFailure("re-serialized message did not parse")
        }
        precondition(again == message, "round trip changed the message")
    }
    return 0
}
