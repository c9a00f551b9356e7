// libFuzzer entry point for the SIP parser, the stream framer and every typed header view.
// Built by scripts/fuzz together with the SIPCore sources (no package, so it stays quick).

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzSIPParser(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = UnsafeBufferPointer(start: data, count: size)
    // Framing resumed after a first piece finds what framing everything at once finds.
    let framer = SIPStreamFramer()
    let whole = Result { () throws(SIPParseError) in try framer.nextFrame(bytes) }
    var state = SIPStreamFramer.ScanState()
    let split = size / 2
    let first = Result { () throws(SIPParseError) in
        try framer.nextFrame(UnsafeBufferPointer(rebasing: bytes[..<split]), resuming: &state)
    }
    if case .success(.needMoreData) = first {
        let resumed = Result { () throws(SIPParseError) in try framer.nextFrame(bytes, resuming: &state) }
        switch (whole, resumed) {
        case (.success(let a), .success(let b)): precondition(a == b, "resumed framing differs")
        case (.failure(let a), .failure(let b)): precondition(a == b, "resumed framing fails differently")
        default: preconditionFailure("resumed framing differs")
        }
    }
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
