import Crypto
import Foundation
import SIPAuth
import Synchronization
import Testing
import Utilities
import WebIMSTesting

@testable import EPCSCF

let issuer = TestWAF.issuer
let audience = TestWAF.audience
let t0 = TestWAF.t0

func validator(_ waf: TestWAF, now: Date = t0) -> TokenValidator {
    TokenValidator(issuers: [waf.trusted], audience: audience, clock: { now })
}

@Suite struct TokenValidatorTests {
    @Test func aGoodTokenGivesItsIdentities() throws {
        let waf = TestWAF()
        let claims = try validator(waf).validate(try waf.token()).get()
        #expect(claims.impi == "alice_private@ims.example.com")
        #expect(claims.impus == ["sip:alice@ims.example.com"])
        #expect(claims.wwsf == "wwsf.ims.example.com")
        #expect(claims.scopes == ["ims-register"])
        // `application/at+jwt` is the same type; `aud` may be an array.
        let other = try waf.token(header: ["typ": "application/at+jwt"], claims: ["aud": ["x", audience]])
        #expect((try? validator(waf).validate(other).get()) != nil)
    }

    /// Two tokens of one WAF, each cached for its flow's refreshes, hold the texts they share
    /// once: `wwsf`, `aud` and `scope` are the first token's storage, not copies.
    @Test func cachedTokensShareTheTextsEveryTokenRepeats() throws {
        let waf = TestWAF()
        let v = validator(waf)
        let wwsf = "https://wwsf.ims.example.com/a-long-enough-origin"
        let first = try v.validate(try waf.token(claims: ["wwsf": wwsf, "jti": "one"])).get()
        let second = try v.validate(try waf.token(claims: ["wwsf": wwsf, "jti": "two"])).get()
        func storage(_ text: String) -> UnsafeRawPointer? {
            var text = text
            return text.withUTF8 { UnsafeRawPointer($0.baseAddress) }
        }
        #expect(second.wwsf == wwsf && storage(first.wwsf) == storage(second.wwsf))
        #expect(storage(first.audience[0]) == storage(second.audience[0]))
        first.scopes.withUnsafeBufferPointer { a in
            second.scopes.withUnsafeBufferPointer { b in #expect(a.baseAddress == b.baseAddress) }
        }
        #expect(first.tokenID == "one" && second.tokenID == "two")
    }

    /// The forged-token matrix of the eP-CSCF issue, each with its exact verdict.
    @Test func forgedTokensAreRefused() throws {
        let waf = TestWAF()
        let v = validator(waf)
        let stranger = P256.Signing.PrivateKey()
        let noneToken =
            (try waf.part(["alg": "none", "typ": "at+jwt", "kid": waf.kid])) + "." + (try waf.part(waf.claims)) + "."
        // HS256 "signed" with the WAF's public key as the secret: the classic key-confusion forgery.
        let hsInput =
            (try waf.part(["alg": "HS256", "typ": "at+jwt", "kid": waf.kid])) + "." + (try waf.part(waf.claims))
        let hsMAC = HMAC<SHA256>.authenticationCode(
            for: Array(hsInput.utf8), using: SymmetricKey(data: waf.key.publicKey.x963Representation))
        let hsToken = hsInput + "." + base64URLEncode(Array(hsMAC))
        let cases: [(String, String, TokenError)] = [
            ("garbage", "not.a.token", .malformed),
            ("two parts", "abc.def", .malformed),
            ("alg none", noneToken, .algorithmNotAllowed),
            ("HS256 with the public key", hsToken, .algorithmNotAllowed),
            ("unknown key", try waf.token(signWith: stranger), .badSignature),
            ("unknown kid", try waf.token(header: ["kid": "other"]), .unknownKey),
            (
                "jwk in header ignored",
                try waf.token(header: ["kid": "other", "jwk": ["kty": "EC"]], signWith: stranger), .unknownKey
            ),
            ("expired", try waf.token(claims: ["exp": t0.timeIntervalSince1970 - 61]), .expired),
            ("not yet valid", try waf.token(claims: ["nbf": t0.timeIntervalSince1970 + 120]), .notYetValid),
            ("wrong iss", try waf.token(claims: ["iss": "https://evil.example"]), .unknownIssuer),
            ("wrong aud", try waf.token(claims: ["aud": "https://other-epcscf.example"]), .wrongAudience),
            ("missing scope", try waf.token(claims: ["scope": "openid"]), .insufficientScope),
            ("typ JWT", try waf.token(header: ["typ": "JWT"]), .wrongType),
            ("no typ", try waf.token(header: ["typ": nil as String?].compactMapValues { $0 }), .wrongType),
            ("no impi", try waf.token(claims: ["impi": nil]), .missingClaim("impi")),
            ("no impu", try waf.token(claims: ["impu": [String]()]), .missingClaim("impu")),
            ("no wwsf", try waf.token(claims: ["wwsf": nil]), .missingClaim("wwsf")),
            ("no exp", try waf.token(claims: ["exp": nil]), .missingClaim("exp")),
        ]
        for (name, token, expected) in cases {
            var tampered = token
            if name == "no typ" {
                // Rebuild without typ: the helper always sets one.
                let header = try waf.part(["alg": "ES256", "kid": waf.kid])
                let input = header + "." + (try waf.part(waf.claims))
                tampered =
                    input + "."
                    + base64URLEncode(Array(try waf.key.signature(for: Array(input.utf8)).rawRepresentation))
            }
            switch v.validate(tampered) {
            case .success: Issue.record("\(name): accepted")
            case .failure(let error): #expect(error == expected, "\(name)")
            }
        }
        // Status codes: 403 only for a valid token lacking the scope.
        #expect(TokenError.insufficientScope.statusCode == 403)
        #expect(TokenError.badSignature.statusCode == 401)
    }

    @Test func aTamperedPayloadBreaksTheSignature() throws {
        let waf = TestWAF()
        let good = try waf.token()
        let parts = good.split(separator: ".").map(String.init)
        var claims = waf.claims
        claims["impu"] = ["sip:bob@ims.example.com"]
        let forged = parts[0] + "." + (try waf.part(claims)) + "." + parts[2]
        #expect(validator(waf).validate(forged) == .failure(.badSignature))
    }

    @Test func theProjectHS256VectorIsRefused() {
        // spec.md §10.7: an HS256 test token; HMAC is never accepted by the eP-CSCF.
        let token =
            "eyJhbGciOiJIUzI1NiIsInR5cCI6ImF0K2p3dCIsImtpZCI6IndhZi10ZXN0LTEifQ.eyJpc3MiOiJodHRwczovL3dhZi5pbXMuZXhhbXBsZS5jb20iLCJzdWIiOiJhbGljZV9wcml2YXRlQGltcy5leGFtcGxlLmNvbSIsImF1ZCI6Imh0dHBzOi8vZXBjc2NmLmltcy5leGFtcGxlLmNvbSIsImV4cCI6MTg5MzQ1NjAwMCwiaWF0IjoxODkzNDUyNDAwLCJqdGkiOiI1ZjJiOGMxZS0wZDRhLTRiN2UtOWMzZi0xYTJiM2M0ZDVlNmYiLCJjbGllbnRfaWQiOiJ3d3NmLmltcy5leGFtcGxlLmNvbSIsInNjb3BlIjoiaW1zLXJlZ2lzdGVyIiwiaW1waSI6ImFsaWNlX3ByaXZhdGVAaW1zLmV4YW1wbGUuY29tIiwiaW1wdSI6WyJzaXA6YWxpY2VAaW1zLmV4YW1wbGUuY29tIl0sInd3c2YiOiJ3d3NmLmltcy5leGFtcGxlLmNvbSJ9.DKha5oaq9a2zOgIb6KPM5bw_YzUGz195-I_EbK1mBF4"
        let v = TokenValidator(issuers: [TestWAF().trusted], audience: audience, clock: { t0 })
        #expect(v.validate(token) == .failure(.algorithmNotAllowed))
    }

    /// The parts are found by byte and a claim of the wrong JSON type reads as absent, so
    /// each check answers for it rather than the token passing or the parser failing.
    @Test func partsAndClaimTypesAreCheckedOneByOne() throws {
        let waf = TestWAF()
        let v = validator(waf)
        let good = try waf.token()
        let cases: [(String, String, TokenError)] = [
            ("four parts", good + ".", .malformed),
            ("empty", "", .malformed),
            ("dots only", "..", .malformed),
            (
                "header not base64url", "%%%." + good.split(separator: ".").dropFirst().joined(separator: "."),
                .malformed
            ),
            ("header without typ", (try waf.part(["x": 1])) + ".e30.AAAA", .wrongType),
            ("typ a number", try waf.token(header: ["typ": 1]), .wrongType),
            ("alg an array", try waf.token(header: ["alg": ["ES256"]]), .algorithmNotAllowed),
            ("aud with a number", try waf.token(claims: ["aud": [audience, 7]]), .wrongAudience),
            (
                "exp a string", try waf.token(claims: ["exp": String(t0.timeIntervalSince1970 + 3600)]),
                .missingClaim("exp")
            ),
            ("impu a number", try waf.token(claims: ["impu": 5]), .missingClaim("impu")),
            ("scope an array", try waf.token(claims: ["scope": ["ims-register"]]), .insufficientScope),
        ]
        for (name, token, expected) in cases {
            #expect(v.validate(token) == .failure(expected), "\(name)")
        }
        // A header that is JSON but not an object (an array) is malformed.
        let arrayHeader = base64URLEncode(Array("[1]".utf8)) + "." + good.split(separator: ".")[1] + ".AAAA"
        #expect(v.validate(arrayHeader) == .failure(.malformed))
        // `exp` with a fraction and `aud` as an array still pass.
        let fractional = try waf.token(claims: ["exp": t0.timeIntervalSince1970 + 0.5, "aud": [audience]])
        #expect((try? v.validate(fractional).get())?.expires == t0.addingTimeInterval(0.5))
    }

    @Test func validatedTokensAreCachedUntilTheyExpire() throws {
        let waf = TestWAF()
        let clock = Clock()
        let v = TokenValidator(issuers: [waf.trusted], audience: audience, clock: { clock.now })
        let token = try waf.token()
        #expect((try? v.validate(token).get()) != nil)
        #expect(v.cache.withLock { $0.count } == 1)
        clock.now = t0.addingTimeInterval(3600 + 61)
        #expect(v.validate(token) == .failure(.expired))
        #expect(v.cache.withLock { $0.count } == 0)
    }

    @Test func jwksKeysAreRead() throws {
        let key = P256.Signing.PrivateKey().publicKey
        let raw = Array(key.x963Representation)
        let jwks: [String: Any] = [
            "keys": [
                [
                    "kty": "EC", "crv": "P-256", "kid": "k1", "use": "sig", "x": base64URLEncode(Array(raw[1..<33])),
                    "y": base64URLEncode(Array(raw[33..<65])),
                ],
                ["kty": "RSA", "kid": "r1", "n": "AQAB", "e": "AQAB"],
                ["kty": "EC", "crv": "P-256", "kid": "bad", "x": "AAAA", "y": "AAAA"],
            ]
        ]
        let keys = TrustedIssuer.keys(fromJWKS: try JSONSerialization.data(withJSONObject: jwks))
        #expect(Array(keys.keys) == ["k1"])
        #expect(keys["k1"]?.x963Representation == key.x963Representation)
        #expect(TrustedIssuer.keys(fromJWKS: Data("garbage".utf8)).isEmpty)
    }
}

final class Clock: Sendable {
    let time = Mutex(t0)
    var now: Date {
        get { time.withLock { $0 } }
        set { time.withLock { $0 = newValue } }
    }
}
