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
        exerciseTypedViews(message)
        // What parses must serialize and parse again to the same message.
        let wire = message.serialized()
        guard let again = try? SIPParser().parse(wire, framing: .stream) else {
            preconditionFailure("re-serialized message did not parse")
        }
        precondition(again == message, "round trip changed the message")
    }
    return 0
}
