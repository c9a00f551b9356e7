import Crypto
import Foundation
import SIPAuth
import SIPCore
import Testing
import WebIMSTesting

@testable import EPCSCF

func processor(_ waf: TestWAF, homeWWSFs: Set<String> = ["https://wwsf.ims.example.com"]) -> RegisterProcessor {
    var configuration = EPCSCFConfiguration(
        homeDomain: "ims.example.com", hostPort: "epcscf.ims.example.com:7443", authorizationServer: issuer)
    configuration.homeWWSFs = homeWWSFs
    return RegisterProcessor(configuration: configuration, tokens: validator(waf), clock: { t0 })
}

/// spec.md §9.2 with a chosen Authorization (and optionally other From/To).
func wicRegister(
    authorization: String?, from: String = "sip:alice@ims.example.com", to: String = "sip:alice@ims.example.com",
    expires: String = "600000"
)
    throws -> SIPRequest
{
    var h = SIPHeaderFields()
    h.append(.via, "SIP/2.0/WSS df7jal23ls0d.invalid;branch=z9hG4bK56sdasks")
    h.append(.maxForwards, "70")
    h.append(.from, "<\(from)>;tag=5pf2k7d2")
    h.append(.to, "<\(to)>")
    h.append(.callID, "9fxced76sl")
    h.append(.cseq, "1 REGISTER")
    h.append(
        .contact,
        "<sip:g8z4h2kq@df7jal23ls0d.invalid;transport=ws>;+sip.instance=\"<urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6>\";reg-id=1"
    )
    h.append(.supported, "path, outbound, gruu")
    if let authorization { h.append(.authorization, authorization) }
    h.append(.expires, expires)
    return SIPRequest(method: .register, uri: .sip(SIPURI(host: "ims.example.com")), headers: h)
}

func forwarded(_ decision: RegisterDecision) -> SIPRequest? {
    if case .forward(let r, _, _, _) = decision { return r }
    return nil
}

/// The TNA header of a forwarded request, if it has one.
func tnaOf(_ request: SIPRequest) -> TrustedNodeAuthorization? {
    ((try? request.headers.authorizations()) ?? []).lazy.compactMap(TrustedNodeAuthorization.init).first
}

func rejected(_ decision: RegisterDecision) -> SIPResponse? {
    if case .reject(let r) = decision { return r }
    return nil
}

@Suite struct RegisterProcessorTests {
    let origin = "https://wwsf.ims.example.com"

    /// Issue 26 item 14: a token from a WAF or WWSF that is not the operator's names them
    /// in full in the TNA header (the S-CSCF checks them against the subscription); a
    /// home token names neither.
    @Test func item14ThirdPartyEntitiesAreNamedInFull() throws {
        let waf = TestWAF()
        let home = try #require(
            forwarded(
                processor(waf).process(
                    try wicRegister(authorization: "Bearer \(try waf.token())"), flowToken: "fl-1", origin: origin,
                    boundIMPI: nil)))
        let homeTNA = try #require(tnaOf(home))
        #expect(homeTNA.wafID == nil && homeTNA.wwsfID == nil)
        // The same token at an edge whose home WWSF is another: wwsf-id is the token's wwsf.
        let foreign = try #require(
            forwarded(
                processor(waf, homeWWSFs: ["https://other.example"]).process(
                    try wicRegister(authorization: "Bearer \(try waf.token())"), flowToken: "fl-1", origin: origin,
                    boundIMPI: nil)))
        let foreignTNA = try #require(tnaOf(foreign))
        #expect(foreignTNA.wwsfID == "wwsf.ims.example.com")
        #expect(foreignTNA.wafID == nil)
        // A WAF that is not the home one: its whole issuer URL, not just its host.
        var configuration = EPCSCFConfiguration(
            homeDomain: "ims.example.com", hostPort: "epcscf.ims.example.com:7443",
            authorizationServer: "https://waf.home.example:8444")
        configuration.homeWWSFs = [origin]
        let third = RegisterProcessor(configuration: configuration, tokens: validator(waf), clock: { t0 })
        let out = try #require(
            forwarded(
                third.process(
                    try wicRegister(authorization: "Bearer \(try waf.token())"), flowToken: "fl-1", origin: origin,
                    boundIMPI: nil)))
        let thirdTNA = try #require(tnaOf(out))
        #expect(thirdTNA.wafID == issuer)
    }

    @Test func aTokenRegisterBecomesTheTNARegisterOfSpec94() throws {
        let waf = TestWAF()
        let p = processor(waf)
        for form in ["Bearer \(try waf.token())", "Bearer access_token=\"\(try waf.token())\""] {
            let out = try #require(
                forwarded(
                    p.process(
                        try wicRegister(authorization: form), flowToken: "fl-7Hk2q9", origin: origin, boundIMPI: nil)))
            let auth = try #require(try out.headers.authorizations().first)
            #expect(TrustedNodeAuthorization(auth)?.impi == "alice_private@ims.example.com")
            #expect(auth.description.contains("integrity-protected=auth-done"))
            #expect(!out.headers.values(.authorization).contains { $0.hasPrefix("Bearer") })
            let path = try out.headers.path
            #expect(path.first?.description == "<sip:fl-7Hk2q9@epcscf.ims.example.com:7443;lr;ob;transport=tcp>")
            #expect(out.headers.require == ["path"])
            #expect(out.headers.pVisitedNetworkIDs == ["ims.example.com"])
            #expect(try out.headers.pChargingVector?["icid-value"]?.isEmpty == false)
            // EPC-20: 600000 asked, the token has an hour left.
            #expect(try out.headers.expires == 3600)
        }
    }

    @Test func aWICCannotClaimAuthDone() throws {
        let waf = TestWAF()
        let forged =
            "Digest username=\"alice_private@ims.example.com\", realm=\"ims.example.com\", uri=\"sip:ims.example.com\", nonce=\"\", response=\"\", integrity-protected=auth-done"
        let out = try #require(
            forwarded(
                processor(waf).process(
                    try wicRegister(authorization: forged), flowToken: "f", origin: origin, boundIMPI: nil)))
        let auth = try #require(try out.headers.authorizations().first)
        // EPC-14: the parameter is gone; the S-CSCF will challenge.
        #expect(auth.integrityProtected == nil)
        #expect(TrustedNodeAuthorization(auth) == nil)
    }

    /// The decision names the IMPI being registered (the flow binds it on a 200): the
    /// token's, whatever the WIC wrote, or the Digest username.
    @Test func theForwardedDecisionNamesTheIMPI() throws {
        let waf = TestWAF()
        let p = processor(waf)
        func impi(_ authorization: String) throws -> String?? {
            if case .forward(_, let impi, _, _) = p.process(
                try wicRegister(authorization: authorization), flowToken: "f", origin: origin, boundIMPI: nil)
            {
                return .some(impi)
            }
            return nil
        }
        #expect(try impi("Bearer \(try waf.token())") == .some("alice_private@ims.example.com"))
        #expect(
            try impi("Digest username=\"carol@ims.example.com\", realm=\"ims.example.com\"")
                == .some("carol@ims.example.com"))
    }

    @Test func identityAndTokenFailuresGetTheirAnswers() throws {
        let waf = TestWAF()
        let p = processor(waf)
        let good = try waf.token()
        func status(_ request: SIPRequest, origin: String? = "https://wwsf.ims.example.com") -> Int? {
            rejected(p.process(request, flowToken: "f", origin: origin, boundIMPI: nil))?.statusCode
        }
        // No credentials at all go on to the S-CSCF (issue 27): it challenges.
        #expect(status(try wicRegister(authorization: nil)) == nil)
        #expect(status(try wicRegister(authorization: "Bearer garbage")) == 401)
        #expect(status(try wicRegister(authorization: "Bearer \(try waf.token(claims: ["scope": "openid"]))")) == 403)
        #expect(
            status(
                try wicRegister(
                    authorization: "Bearer \(good)", from: "sip:bob@ims.example.com", to: "sip:bob@ims.example.com"))
                == 403)
        #expect(status(try wicRegister(authorization: "Bearer \(good)", from: "sip:bob@ims.example.com")) == 403)
        #expect(status(try wicRegister(authorization: "Bearer \(good)", to: "sip:bob@ims.example.com")) == 403)
        #expect(status(try wicRegister(authorization: "Bearer \(good)"), origin: "https://evil.example") == 403)
        #expect(status(try wicRegister(authorization: "Bearer ")) == 400)
        // A scheme it cannot use is left out: the REGISTER is challenged (RFC 4475 §3.3.7).
        #expect(status(try wicRegister(authorization: "Basic YWxhZGRpbjpvcGVuc2VzYW1l")) == nil)
        // The 401 for a bad token carries the RFC 8898 challenge with error="invalid_token".
        let challenge = try #require(
            rejected(
                p.process(
                    try wicRegister(authorization: "Bearer garbage"), flowToken: "f", origin: origin, boundIMPI: nil)))
        let bearer = try #require(try challenge.headers.challenges().first)
        #expect(bearer.isBearer)
        #expect(bearer["realm"] == "ims.example.com" && bearer["scope"] == "ims-register")
        #expect(bearer["authz_server"] == issuer && bearer["error"] == "invalid_token")
    }

    /// Issue 27: the eP-CSCF is a proxy, so what it forwards has one hop less (spec.md §9.4
    /// shows 69 for the WIC's 70); none left is 483, garbage 400, none given counts as 70.
    @Test func maxForwardsIsDecrementedOnTheWayToTheSCSCF() throws {
        let waf = TestWAF()
        let p = processor(waf)
        func forward(_ value: String?) throws -> (SIPRequest?, Int?) {
            var request = try wicRegister(authorization: "Bearer \(try waf.token())")
            request.headers[.maxForwards] = value
            let decision = p.process(request, flowToken: "f", origin: origin, boundIMPI: nil)
            return (forwarded(decision), rejected(decision)?.statusCode)
        }
        #expect(try forward("70").0?.headers[.maxForwards] == "69")
        #expect(try forward(nil).0?.headers[.maxForwards] == "69")
        #expect(try forward("1").0?.headers[.maxForwards] == "0")
        #expect(try forward("0").1 == 483)
        #expect(try forward("lots").1 == 400)
    }

    /// Issue 27 (JsSIP and SIP.js register with plain Digest): a REGISTER without any
    /// Authorization goes on as it is; the S-CSCF's Digest 401 reaches the WIC with our
    /// Bearer challenge added, and a refusal (no such IMPU, no Digest) becomes the bare
    /// Bearer 401 — no `error` parameter, since no token was given.
    @Test func aCredentialLessRegisterIsChallengedByTheSCSCFAndUs() throws {
        let p = processor(TestWAF())
        let upstream = try #require(
            forwarded(p.process(try wicRegister(authorization: nil), flowToken: "f", origin: origin, boundIMPI: nil)))
        #expect(!upstream.headers.contains(.authorization))
        #expect(try upstream.headers.path.first?.uri.sipURI?.user == "f")
        var digest = SIPResponse(replyingTo: upstream, statusCode: 401, toTag: "sc1")
        digest.headers.append(
            .wwwAuthenticate, "Digest realm=\"ims.example.com\", nonce=\"n1\", algorithm=MD5, qop=\"auth\"")
        let both = p.processResponse(digest, offeringBearerFor: upstream)
        #expect(try both.headers.challenges().map(\.scheme) == ["Digest", "Bearer"])
        let refused = p.processResponse(
            SIPResponse(replyingTo: upstream, statusCode: 403, toTag: "sc1"), offeringBearerFor: upstream)
        #expect(refused.statusCode == 401)
        let bare = try #require(try refused.headers.challenges().first)
        #expect(bare.isBearer && bare["error"] == nil)
        // A 200 (nothing to challenge) passes as it is.
        #expect(
            p.processResponse(SIPResponse(replyingTo: upstream, statusCode: 200), offeringBearerFor: upstream)
                .statusCode == 200)
    }

    @Test func digestGetsTLSPendingThenTLSYesAndChallengesLoseIKCK() throws {
        let waf = TestWAF()
        let p = processor(waf)
        let first =
            "Digest username=\"alice_private@ims.example.com\", realm=\"ims.example.com\", uri=\"sip:ims.example.com\", nonce=\"\", response=\"\""
        let out1 = try #require(
            forwarded(p.process(try wicRegister(authorization: first), flowToken: "f", origin: origin, boundIMPI: nil)))
        #expect(try out1.headers.authorizations().first?.integrityProtected == nil)
        let answer =
            "Digest username=\"alice_private@ims.example.com\", realm=\"ims.example.com\", uri=\"sip:ims.example.com\", nonce=\"n\", algorithm=MD5, qop=auth, nc=00000001, cnonce=\"c\", response=\"701d8b75d7b420c7a2646ea676424729\""
        let out2 = try #require(
            forwarded(p.process(try wicRegister(authorization: answer), flowToken: "f", origin: origin, boundIMPI: nil))
        )
        #expect(try out2.headers.authorizations().first?.integrityProtected == "tls-pending")
        let out3 = try #require(
            forwarded(
                p.process(
                    try wicRegister(authorization: answer), flowToken: "f", origin: origin,
                    boundIMPI: "alice_private@ims.example.com")))
        #expect(try out3.headers.authorizations().first?.integrityProtected == "tls-yes")
        // Nothing to take out: the WIC's text goes on as written, our parameter after it.
        #expect(out1.headers[.authorization] == first)
        #expect(out2.headers[.authorization] == answer + ", integrity-protected=tls-pending")
        // EPC-14: what a WIC claims about integrity protection never reaches the S-CSCF.
        for claim in [", integrity-protected=auth-done", ", Integrity-Protected=\"auth-done\", waf-id=\"x\""] {
            let forged = try #require(
                forwarded(
                    p.process(
                        try wicRegister(authorization: answer + claim), flowToken: "f", origin: origin, boundIMPI: nil))
            )
            let field = try #require(try forged.headers.authorizations().first)
            #expect(field.integrityProtected == "tls-pending" && field["waf-id"] == nil)
            #expect(!(forged.headers[.authorization] ?? "").lowercased().contains("auth-done"))
        }

        var challenge = SIPResponse(statusCode: 401)
        challenge.headers.append(
            .wwwAuthenticate, "Digest realm=\"r\", nonce=\"n\", algorithm=AKAv1-MD5, qop=\"auth\", ik=\"00\", ck=\"11\""
        )
        let toWIC = p.processResponse(challenge)
        #expect(toWIC.headers[.wwwAuthenticate] == "Digest realm=\"r\", nonce=\"n\", algorithm=AKAv1-MD5, qop=\"auth\"")
        // Spaced and upper-case parameter names are keys too; a challenge without them stays as it came.
        var spaced = SIPResponse(statusCode: 401)
        spaced.headers.append(.wwwAuthenticate, "Digest realm=\"r\", nonce=\"n\", IK = \"00\", Ck=\"11\"")
        spaced.headers.append(.wwwAuthenticate, "Digest realm=\"r\", nonce=\"quick\",  qop=\"auth\"")
        let spacedToWIC = p.processResponse(spaced).headers.fieldValues(.wwwAuthenticate)
        #expect(
            spacedToWIC == ["Digest realm=\"r\", nonce=\"n\"", "Digest realm=\"r\", nonce=\"quick\",  qop=\"auth\""])
    }

    @Test func deRegistrationKeepsExpiresZero() throws {
        let waf = TestWAF()
        let out = try #require(
            forwarded(
                processor(waf).process(
                    try wicRegister(authorization: "Bearer \(try waf.token())", expires: "0"), flowToken: "f",
                    origin: "https://wwsf.ims.example.com", boundIMPI: nil)))
        #expect(try out.headers.expires == 0)
    }
}
