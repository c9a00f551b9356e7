// Parser and serializer throughput on one core: `scripts/bench-sipcore` (release build).
// Each case runs for a fixed wall time after a warm-up and prints operations per second.
import Foundation
import SIPCore

func crlf(_ text: String) -> String {
    text.split(separator: "\n", omittingEmptySubsequences: false).joined(separator: "\r\n")
}

// spec.md §9.2, with the §10.7 token in full.
let register92 = crlf(
    """
    REGISTER sip:ims.example.com SIP/2.0
    Via: SIP/2.0/WSS df7jal23ls0d.invalid;branch=z9hG4bK56sdasks
    Max-Forwards: 70
    From: <sip:alice@ims.example.com>;tag=5pf2k7d2
    To: <sip:alice@ims.example.com>
    Call-ID: 9fxced76sl
    CSeq: 1 REGISTER
    Contact: <sip:g8z4h2kq@df7jal23ls0d.invalid;transport=ws>;+sip.instance="<urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6>";reg-id=1
    Supported: path, outbound, gruu
    Authorization: Bearer eyJhbGciOiJIUzI1NiIsInR5cCI6ImF0K2p3dCIsImtpZCI6IndhZi10ZXN0LTEifQ.eyJpc3MiOiJodHRwczovL3dhZi5pbXMuZXhhbXBsZS5jb20iLCJzdWIiOiJhbGljZV9wcml2YXRlQGltcy5leGFtcGxlLmNvbSIsImF1ZCI6Imh0dHBzOi8vZXBjc2NmLmltcy5leGFtcGxlLmNvbSIsImV4cCI6MTg5MzQ1NjAwMCwiaWF0IjoxODkzNDUyNDAwLCJqdGkiOiI1ZjJiOGMxZS0wZDRhLTRiN2UtOWMzZi0xYTJiM2M0ZDVlNmYiLCJjbGllbnRfaWQiOiJ3d3NmLmltcy5leGFtcGxlLmNvbSIsInNjb3BlIjoiaW1zLXJlZ2lzdGVyIiwiaW1waSI6ImFsaWNlX3ByaXZhdGVAaW1zLmV4YW1wbGUuY29tIiwiaW1wdSI6WyJzaXA6YWxpY2VAaW1zLmV4YW1wbGUuY29tIl0sInd3c2YiOiJ3d3NmLmltcy5leGFtcGxlLmNvbSJ9.DKha5oaq9a2zOgIb6KPM5bw_YzUGz195-I_EbK1mBF4
    Expires: 600000
    Content-Length: 0


    """)

// spec.md §9.5.
let ok95 = crlf(
    """
    SIP/2.0 200 OK
    Via: SIP/2.0/TLS epcscf.ims.example.com:5061;branch=z9hG4bKep7f3a
    Via: SIP/2.0/WSS df7jal23ls0d.invalid;branch=z9hG4bK56sdasks;received=198.51.100.23;rport=52111
    Path: <sip:fl-7Hk2q9@epcscf.ims.example.com;lr;ob>
    Service-Route: <sip:orig-3f9a@scscf.ims.example.com;lr>
    P-Associated-URI: <sip:alice@ims.example.com>, <tel:+15551234567>
    Require: outbound
    From: <sip:alice@ims.example.com>;tag=5pf2k7d2
    To: <sip:alice@ims.example.com>;tag=sc-41a7
    Call-ID: 9fxced76sl
    CSeq: 1 REGISTER
    Contact: <sip:g8z4h2kq@df7jal23ls0d.invalid;transport=ws>;expires=3600;+sip.instance="<urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6>";reg-id=1;pub-gruu="sip:alice@ims.example.com;gr=urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6";temp-gruu="sip:tgruu.7hs==jd7vnzga5w7fajsc7-ajd6fabz0f8g5@ims.example.com;gr"
    P-Charging-Vector: icid-value="epcscf-1700000000-000001";orig-ioi=ims.example.com;term-ioi=ims.example.com
    Content-Length: 0


    """)

func now() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

/// Runs `body` in batches until `seconds` have passed; returns operations per second.
@discardableResult
func measure(_ name: String, seconds: Double = 2.0, _ body: () throws -> Int) rethrows -> Int {
    var sink = 0
    if CommandLine.arguments.count > 2, !name.contains(CommandLine.arguments[2]) { return 0 }
    for _ in 0..<2_000 { sink &+= try body() }  // warm-up
    var count = 0
    let start = now()
    var elapsed = 0.0
    repeat {
        for _ in 0..<1_000 { sink &+= try body() }
        count += 1_000
        elapsed = now() - start
    } while elapsed < seconds
    let rate = Double(count) / elapsed
    let padded = name.padding(toLength: 58, withPad: " ", startingAt: 0)
    print("\(padded) \(String(format: "%10.0f", rate)) /s   \(String(format: "%6.3f", 1e6 / rate)) µs")
    return sink
}

let parser = SIPParser()
let registerBytes = Array(register92.utf8)
let okBytes = Array(ok95.utf8)
guard case .request(let parsedRegister) = try parser.parse(registerBytes),
    case .response(let parsedOK) = try parser.parse(okBytes)
else {
    print("fixtures did not parse")
    exit(1)
}

let seconds = CommandLine.arguments.count > 1 ? Double(CommandLine.arguments[1]) ?? 2.0 : 2.0
print("SIPCore benchmark — one thread, \(seconds) s per case")
try measure("parse §9.2 REGISTER (message only)", seconds: seconds) {
    guard case .request(let r) = try parser.parse(registerBytes) else { return 0 }
    return r.headers.count
}
try measure("parse §9.2 REGISTER + Via/From/To/Contact/Authorization", seconds: seconds) {
    guard case .request(let r) = try parser.parse(registerBytes) else { return 0 }
    let via = try r.headers.topVia
    let from = try r.headers.from
    let to = try r.headers.to
    let contact = try r.headers.contact
    let auth = try r.headers.authorizations()
    guard case .contacts(let c)? = contact else { return 0 }
    return via.host.utf8.count &+ (from.tag?.utf8.count ?? 0) &+ to.parameters.count &+ c.count &+ auth.count
}
try measure("parse §9.5 200 OK (message only)", seconds: seconds) {
    guard case .response(let r) = try parser.parse(okBytes) else { return 0 }
    return r.headers.count
}
try measure("parse §9.5 200 OK + Vias/Path/Service-Route/P-AU/Contact", seconds: seconds) {
    guard case .response(let r) = try parser.parse(okBytes) else { return 0 }
    return try r.headers.vias.count &+ r.headers.path.count &+ r.headers.serviceRoute.count
        &+ r.headers.pAssociatedURI.count &+ (r.headers.contact == nil ? 0 : 1)
}
measure("serialize §9.2 REGISTER", seconds: seconds) { parsedRegister.serialized().count }
measure("serialize §9.5 200 OK", seconds: seconds) { parsedOK.serialized().count }
