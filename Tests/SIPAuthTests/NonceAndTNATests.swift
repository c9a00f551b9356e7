import Crypto
import Foundation
import SIPCore
import Testing
import Utilities

@testable import SIPAuth

@Suite struct NonceTests {
    let minter = NonceMinter(key: Array(repeating: 7, count: 32), lifetime: .seconds(60))
    let t0 = Date(timeIntervalSince1970: 1_893_453_000)

    @Test func freshNonceIsValidThenStale() {
        let nonce = minter.mint(realm: "ims.example.com", now: t0)
        #expect(minter.check(nonce, realm: "ims.example.com", now: t0) == .valid)
        #expect(minter.check(nonce, realm: "ims.example.com", now: t0.addingTimeInterval(59)) == .valid)
        #expect(minter.check(nonce, realm: "ims.example.com", now: t0.addingTimeInterval(61)) == .stale)
        #expect(minter.mint(realm: "r", now: t0) != minter.mint(realm: "r", now: t0))
    }

    /// Layout and MAC as documented: HMAC-SHA256 over time ‖ random ‖ realm, first 16 bytes.
    @Test func theMACIsHMACSHA256OfTimeRandomAndRealm() throws {
        let nonce = minter.mint(realm: "ims.example.com", now: t0)
        let bytes = try #require(base64URLDecode(nonce))
        #expect(bytes.count == 32)
        let expected = HMAC<SHA256>.authenticationCode(
            for: Array(bytes[0..<16]) + Array("ims.example.com".utf8),
            using: SymmetricKey(data: [UInt8](repeating: 7, count: 32)))
        #expect(Array(bytes[16..<32]) == Array(expected.prefix(16)))
        #expect(minter.check(nonce, realm: "ims.example.com", now: t0) == .valid)
    }

    @Test func forgedOrForeignNoncesAreInvalid() {
        let nonce = minter.mint(realm: "ims.example.com", now: t0)
        #expect(minter.check(nonce, realm: "other.example.com", now: t0) == .invalid)
        let otherKey = NonceMinter(key: Array(repeating: 8, count: 32))
        #expect(otherKey.check(nonce, realm: "ims.example.com", now: t0) == .invalid)
        var bytes = Array(nonce.utf8)
        bytes[3] = bytes[3] == UInt8(ascii: "A") ? UInt8(ascii: "B") : UInt8(ascii: "A")
        #expect(minter.check(String(decoding: bytes, as: UTF8.self), realm: "ims.example.com", now: t0) == .invalid)
        for garbage in ["", "abc", "!!!!", String(repeating: "A", count: 5000), "4f6e8a2b9c1d3e5f7a9b0c2d4e6f8a1b"] {
            #expect(minter.check(garbage, realm: "ims.example.com", now: t0) == .invalid)
        }
        // Issued in the future: not trusted.
        let future = minter.mint(realm: "r", now: t0.addingTimeInterval(3600))
        #expect(minter.check(future, realm: "r", now: t0) == .invalid)
    }

    @Test func nonceCountsMustIncrease() {
        let tracker = NonceCountTracker(capacity: 3)
        #expect(tracker.accept(nonce: "n1", nc: 1))
        #expect(!tracker.accept(nonce: "n1", nc: 1))  // replay
        #expect(tracker.accept(nonce: "n1", nc: 2))
        #expect(!tracker.accept(nonce: "n1", nc: 1))
        // Bounded: more nonces than capacity evict the oldest, never grow without limit.
        for i in 0..<10 { #expect(tracker.accept(nonce: "x\(i)", nc: 1)) }
    }

    /// A full table of live nonces forgets its oldest generation, and a forgotten nonce is
    /// refused (so challenged again), never taken for a first use: a replay of its answer fails.
    @Test func aForgottenNonceIsRefusedNotReplayable() {
        let minter = NonceMinter(key: Array(repeating: 7, count: 32))
        let tracker = NonceCountTracker(capacity: 100)
        let t0 = Date(timeIntervalSince1970: 1_800_000_000)
        let nonces = (0..<300).map { minter.mint(realm: "r", now: t0.addingTimeInterval(Double($0) / 1000)) }
        for (i, nonce) in nonces.enumerated() {
            #expect(tracker.accept(nonce: nonce, nc: 1, now: t0.addingTimeInterval(Double(i) / 1000)))
        }
        let now = t0.addingTimeInterval(1)
        // The first ones are forgotten: their replay is refused, as a remembered one is.
        #expect(!tracker.accept(nonce: nonces[0], nc: 1, now: now))
        #expect(!tracker.accept(nonce: nonces[299], nc: 1, now: now))
        // A remembered nonce's next count, and a nonce issued after the forgotten ones, pass.
        #expect(tracker.accept(nonce: nonces[299], nc: 2, now: now))
        #expect(tracker.accept(nonce: minter.mint(realm: "r", now: now), nc: 1, now: now))
    }

    /// Nonces older than the lifetime leave by age alone, without the table filling up.
    @Test func countsAgeOutWithTheNonceLifetime() {
        let minter = NonceMinter(key: Array(repeating: 7, count: 32), lifetime: .seconds(300))
        let tracker = NonceCountTracker(capacity: 100, lifetime: .seconds(300))
        let t0 = Date(timeIntervalSince1970: 1_800_000_000)
        let early = minter.mint(realm: "r", now: t0)
        #expect(tracker.accept(nonce: early, nc: 1, now: t0))
        // Within the lifetime the count is kept.
        #expect(!tracker.accept(nonce: early, nc: 1, now: t0.addingTimeInterval(299)))
        // A nonce issued within the lifetime before a time-aged generation left is still new.
        let later = minter.mint(realm: "r", now: t0.addingTimeInterval(299))
        #expect(tracker.accept(nonce: later, nc: 1, now: t0.addingTimeInterval(700)))
    }
}

@Suite struct TrustedNodeAuthorizationTests {
    @Test func writesTheSpec94Header() {
        let tna = TrustedNodeAuthorization(
            impi: "alice_private@ims.example.com", realm: "ims.example.com", uri: "sip:ims.example.com")
        #expect(
            tna.field.description
                == "Digest username=\"alice_private@ims.example.com\", realm=\"ims.example.com\", uri=\"sip:ims.example.com\", nonce=\"\", response=\"\", integrity-protected=auth-done"
        )
    }

    /// The directly written text is the parameter list's text, quoting and all, and reads back.
    @Test func headerValueIsTheFieldsText() throws {
        let cases: [TrustedNodeAuthorization] = [
            TrustedNodeAuthorization(
                impi: "alice_private@ims.example.com", realm: "ims.example.com", uri: "sip:ims.example.com"),
            TrustedNodeAuthorization(
                impi: "a\"b\\c@x", realm: "", uri: "sip:x;transport=ws", wafID: "waf.example.com",
                wwsfID: "https://wwsf.example.com:8443"),
            TrustedNodeAuthorization(impi: "bob@x", realm: "r", uri: "u", wafID: nil, wwsfID: "w\"w"),
        ]
        for tna in cases {
            #expect(tna.headerValue == tna.field.description)
            let read = try #require(TrustedNodeAuthorization(try SIPAuthField.parse(tna.headerValue)))
            #expect(read == tna)
        }
    }

    @Test func readsQuotedAndBareAuthDoneAndThirdPartyIDs() throws {
        for text in [
            "Digest username=\"a@h\", realm=\"h\", uri=\"sip:h\", nonce=\"\", response=\"\", integrity-protected=\"auth-done\", waf-id=\"waf.third.example\"",
            "Digest username=\"a@h\", realm=\"h\", uri=\"sip:h\", nonce=\"\", response=\"\", integrity-protected=auth-done, waf-id=\"waf.third.example\"",
        ] {
            let tna = try #require(TrustedNodeAuthorization(try SIPAuthField.parse(text)))
            #expect(tna.impi == "a@h")
            #expect(tna.wafID == "waf.third.example")
        }
        #expect(
            TrustedNodeAuthorization(try SIPAuthField.parse("Digest username=\"a@h\", integrity-protected=tls-yes"))
                == nil)
        #expect(TrustedNodeAuthorization(try SIPAuthField.parse("Bearer abc")) == nil)
        #expect(
            TrustedNodeAuthorization(try SIPAuthField.parse("Digest username=\"\", integrity-protected=auth-done"))
                == nil)
    }

    @Test func trustedNodeParametersCanBeStripped() throws {
        var f = try SIPAuthField.parse(
            "Digest username=\"a\", integrity-protected=auth-done, waf-id=\"w\", wwsf-id=\"x\", realm=\"r\"")
        f.removeTrustedNodeParameters()
        #expect(f.description == "Digest username=\"a\", realm=\"r\"")
    }
}
