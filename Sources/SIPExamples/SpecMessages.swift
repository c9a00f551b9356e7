/// The messages of spec.md §9, with CRLF line ends and the folding shown there.
public enum SpecMessages {
    public static func crlf(_ text: String) -> String {
        text.split(separator: "\n", omittingEmptySubsequences: false).joined(separator: "\r\n")
    }

    /// The project test token of spec.md §10.7.
    public static let token =
        "eyJhbGciOiJIUzI1NiIsInR5cCI6ImF0K2p3dCIsImtpZCI6IndhZi10ZXN0LTEifQ.eyJpc3MiOiJodHRwczovL3dhZi5pbXMuZXhhbXBsZS5jb20iLCJzdWIiOiJhbGljZV9wcml2YXRlQGltcy5leGFtcGxlLmNvbSIsImF1ZCI6Imh0dHBzOi8vZXBjc2NmLmltcy5leGFtcGxlLmNvbSIsImV4cCI6MTg5MzQ1NjAwMCwiaWF0IjoxODkzNDUyNDAwLCJqdGkiOiI1ZjJiOGMxZS0wZDRhLTRiN2UtOWMzZi0xYTJiM2M0ZDVlNmYiLCJjbGllbnRfaWQiOiJ3d3NmLmltcy5leGFtcGxlLmNvbSIsInNjb3BlIjoiaW1zLXJlZ2lzdGVyIiwiaW1waSI6ImFsaWNlX3ByaXZhdGVAaW1zLmV4YW1wbGUuY29tIiwiaW1wdSI6WyJzaXA6YWxpY2VAaW1zLmV4YW1wbGUuY29tIl0sInd3c2YiOiJ3d3NmLmltcy5leGFtcGxlLmNvbSJ9.DKha5oaq9a2zOgIb6KPM5bw_YzUGz195-I_EbK1mBF4"

    /// §9.2: REGISTER, WIC → eP-CSCF with a Bearer token (Contact folded over two lines).
    public static let register92 = crlf(
        """
        REGISTER sip:ims.example.com SIP/2.0
        Via: SIP/2.0/WSS df7jal23ls0d.invalid;branch=z9hG4bK56sdasks
        Max-Forwards: 70
        From: <sip:alice@ims.example.com>;tag=5pf2k7d2
        To: <sip:alice@ims.example.com>
        Call-ID: 9fxced76sl
        CSeq: 1 REGISTER
        Contact: <sip:g8z4h2kq@df7jal23ls0d.invalid;transport=ws>
            ;+sip.instance="<urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6>";reg-id=1
        Supported: path, outbound, gruu
        Authorization: Bearer \(token)
        Expires: 600000
        Content-Length: 0


        """)

    /// §9.4: REGISTER, eP-CSCF → S-CSCF (TNA).
    public static let register94 = crlf(
        """
        REGISTER sip:ims.example.com SIP/2.0
        Via: SIP/2.0/TLS epcscf.ims.example.com:5061;branch=z9hG4bKep7f3a
        Via: SIP/2.0/WSS df7jal23ls0d.invalid;branch=z9hG4bK56sdasks;received=198.51.100.23;rport=52111
        Max-Forwards: 69
        Path: <sip:fl-7Hk2q9@epcscf.ims.example.com;lr;ob>
        Require: path
        Supported: path, outbound, gruu
        P-Visited-Network-ID: "ims.example.com"
        P-Charging-Vector: icid-value="epcscf-1700000000-000001";orig-ioi=ims.example.com
        From: <sip:alice@ims.example.com>;tag=5pf2k7d2
        To: <sip:alice@ims.example.com>
        Call-ID: 9fxced76sl
        CSeq: 1 REGISTER
        Contact: <sip:g8z4h2kq@df7jal23ls0d.invalid;transport=ws>
            ;+sip.instance="<urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6>";reg-id=1
        Authorization: Digest username="alice_private@ims.example.com", realm="ims.example.com",
            uri="sip:ims.example.com", nonce="", response="", integrity-protected=auth-done
        Expires: 3600
        Content-Length: 0


        """)

    /// §9.5: 200 OK, S-CSCF → eP-CSCF.
    public static let ok95 = crlf(
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
        Contact: <sip:g8z4h2kq@df7jal23ls0d.invalid;transport=ws>;expires=3600
            ;+sip.instance="<urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6>";reg-id=1
            ;pub-gruu="sip:alice@ims.example.com;gr=urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6"
            ;temp-gruu="sip:tgruu.7hs==jd7vnzga5w7fajsc7-ajd6fabz0f8g5@ims.example.com;gr"
        P-Charging-Vector: icid-value="epcscf-1700000000-000001";orig-ioi=ims.example.com;term-ioi=ims.example.com
        Content-Length: 0


        """)
}
