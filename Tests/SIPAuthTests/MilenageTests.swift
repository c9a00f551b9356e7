import Testing
import Utilities

@testable import SIPAuth

func h(_ s: String) -> [UInt8] { bytes(hex: s) ?? [] }

/// TS 35.207/35.208 test sets 1–3 as listed in spec.md §10.1.
struct MilenageSet: Sendable, CustomStringConvertible {
    var name, k, rand, sqn, amf, op, opc, f1, f1star, f2, f3, f4, f5, f5star, autn, nonce: String
    var description: String { name }
}

let milenageSets = [
    MilenageSet(
        name: "set 1", k: "465b5ce8b199b49faa5f0a2ee238a6bc", rand: "23553cbe9637a89d218ae64dae47bf35",
        sqn: "ff9bb4d0b607",
        amf: "b9b9", op: "cdc202d5123e20f62b6d676ac72cb318", opc: "cd63cb71954a9f4e48a5994e37a02baf",
        f1: "4a9ffac354dfafb3",
        f1star: "01cfaf9ec4e871e9", f2: "a54211d5e3ba50bf", f3: "b40ba9a3c58b2a05bbf0d987b21bf8cb",
        f4: "f769bcd751044604127672711c6d3441", f5: "aa689c648370", f5star: "451e8beca43b",
        autn: "55f328b43577b9b94a9ffac354dfafb3", nonce: "I1U8vpY3qJ0hiuZNrke/NVXzKLQ1d7m5Sp/6w1Tfr7M="),
    MilenageSet(
        name: "set 2", k: "0396eb317b6d1c36f19c1c84cd6ffd16", rand: "c00d603103dcee52c4478119494202e8",
        sqn: "fd8eef40df7d",
        amf: "af17", op: "ff53bade17df5d4e793073ce9d7579fa", opc: "53c15671c60a4b731c55b4a441c0bde2",
        f1: "5df5b31807e258b0",
        f1star: "a8c016e51ef4a343", f2: "d3a628ed988620f0", f3: "58c433ff7a7082acd424220f2b67c556",
        f4: "21a8c1f929702adb3e738488b9f5c5da", f5: "c47783995f72", f5star: "30f1197061c1",
        autn: "39f96cd9800faf175df5b31807e258b0", nonce: "wA1gMQPc7lLER4EZSUIC6Dn5bNmAD68XXfWzGAfiWLA="),
    MilenageSet(
        name: "set 3", k: "fec86ba6eb707ed08905757b1bb44b8f", rand: "9f7c8d021accf4db213ccff0c7f71a6a",
        sqn: "9d0277595ffc",
        amf: "725c", op: "dbc59adcb6f9a0ef735477b7fadf8374", opc: "1006020f0a478bf6b699f15c062e42b3",
        f1: "9cabc3e99baf7281",
        f1star: "95814ba2b3044324", f2: "8011c48c0c214ed2", f3: "5dbdbb2954e8f3cde665b046179a5098",
        f4: "59a92d3b476a0443487055cf88b2307b", f5: "33484dc2136b", f5star: "deacdd848cc6",
        autn: "ae4a3a9b4c97725c9cabc3e99baf7281", nonce: "n3yNAhrM9NshPM/wx/caaq5KOptMl3JcnKvD6ZuvcoE="),
]

@Suite struct MilenageTests {
    @Test(arguments: milenageSets)
    func testSet(_ set: MilenageSet) throws {
        let opc = try Milenage.opc(k: h(set.k), op: h(set.op))
        #expect(hex(opc) == set.opc)
        let m = try Milenage(k: h(set.k), opc: opc)
        let (macA, macS) = try m.f1(rand: h(set.rand), sqn: h(set.sqn), amf: h(set.amf))
        #expect(hex(macA) == set.f1)
        #expect(hex(macS) == set.f1star)
        let (res, ck, ik, ak) = try m.f2345(rand: h(set.rand))
        #expect(hex(res) == set.f2)
        #expect(hex(ck) == set.f3)
        #expect(hex(ik) == set.f4)
        #expect(hex(ak) == set.f5)
        #expect(hex(try m.f5star(rand: h(set.rand))) == set.f5star)
        let autn = IMSAKA.autn(sqn: h(set.sqn), ak: ak, amf: h(set.amf), macA: macA)
        #expect(hex(autn) == set.autn)
        #expect(IMSAKA.nonce(rand: h(set.rand), autn: autn) == set.nonce)
        let split = try #require(IMSAKA.split(nonce: set.nonce))
        #expect(hex(split.rand) == set.rand && hex(split.autn) == set.autn)
    }

    /// spec.md §10.3: AUTS for SQN_MS = 000000000021 with the set 1 keys.
    @Test func resynchronisationAUTS() throws {
        let set = milenageSets[0]
        let m = try Milenage(k: h(set.k), opc: h(set.opc))
        let akStar = try m.f5star(rand: h(set.rand))
        let sqnMS = h("000000000021")
        let macS = try m.f1(rand: h(set.rand), sqn: sqnMS, amf: h("0000")).macS
        #expect(hex(macS) == "80125eca8884b56a")
        let auts = xor(sqnMS, akStar) + macS
        #expect(hex(auts) == "451e8beca41a80125eca8884b56a")
        #expect(xor(Array(auts[0..<6]), akStar) == sqnMS)
    }

    @Test func wrongLengthsAreErrorsNotCrashes() {
        #expect(throws: Milenage.Failure.badLength) { try Milenage(k: [1, 2, 3], opc: h(milenageSets[0].opc)) }
        #expect(throws: Milenage.Failure.badLength) { try Milenage.opc(k: [], op: []) }
        #expect(bytes(hex: "abc") == nil)
        #expect(bytes(hex: "zz") == nil)
    }
}

@Suite struct DigestTests {
    /// spec.md §10.4, RFC 2617 §3.5.
    @Test func rfc2617Example() {
        let a = DigestAlgorithm.md5
        let ha1 = a.ha1(username: "Mufasa", realm: "testrealm@host.com", password: Array("Circle Of Life".utf8))
        let r = a.response(
            ha1: ha1, nonce: "dcd98b7102dd2f0e8b11d0f600bfb0c093", nc: "00000001", cnonce: "0a4f113b", qop: "auth",
            method: "GET", uri: "/dir/index.html")
        #expect(r == "6629fae49393a05397450978507c4ef1")
    }

    /// spec.md §10.4, RFC 7616 §3.9.1, MD5 and SHA-256.
    @Test(arguments: [
        (DigestAlgorithm.md5, "8ca523f5e9506fed4657c9700eebdbec"),
        (.sha256, "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"),
    ])
    func rfc7616Examples(algorithm: DigestAlgorithm, expected: String) {
        let ha1 = algorithm.ha1(
            username: "Mufasa", realm: "http-auth@example.org", password: Array("Circle of Life".utf8))
        let r = algorithm.response(
            ha1: ha1, nonce: "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", nc: "00000001",
            cnonce: "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ", qop: "auth", method: "GET", uri: "/dir/index.html")
        #expect(r == expected)
    }

    /// spec.md §10.5: SIP Digest with IMS naming, and rspauth.
    @Test func imsSIPDigest() {
        let a = DigestAlgorithm.md5
        let ha1 = a.ha1(
            username: "alice_private@ims.example.com", realm: "ims.example.com", password: Array("alice-secret".utf8))
        #expect(ha1 == "fcd23ea1fb2e90c5b07a225f556d81c3")
        let r = a.response(
            ha1: ha1, nonce: "4f6e8a2b9c1d3e5f7a9b0c2d4e6f8a1b", nc: "00000001", cnonce: "0a4f113b", qop: "auth",
            method: "REGISTER", uri: "sip:ims.example.com")
        #expect(r == "701d8b75d7b420c7a2646ea676424729")
        #expect(
            a.responseAuth(
                ha1: ha1, nonce: "4f6e8a2b9c1d3e5f7a9b0c2d4e6f8a1b", nc: "00000001", cnonce: "0a4f113b", qop: "auth",
                uri: "sip:ims.example.com") == "9d18ab883a45d8e27f37907a7e5120f2")
    }

    /// spec.md §10.2: AKAv1-MD5 and AKAv2-MD5 responses with test set 1.
    @Test func imsAKADigest() throws {
        let set = milenageSets[0]
        let m = try Milenage(k: h(set.k), opc: h(set.opc))
        let v = try m.f2345(rand: h(set.rand))
        let user = "001010000000001@ims.mnc001.mcc001.3gppnetwork.org"
        let realm = "ims.mnc001.mcc001.3gppnetwork.org"
        func response(_ algorithm: DigestAlgorithm, _ password: [UInt8]) -> String {
            let ha1 = algorithm.ha1(username: user, realm: realm, password: password)
            return algorithm.response(
                ha1: ha1, nonce: set.nonce, nc: "00000001", cnonce: "0a4f113b", qop: "auth", method: "REGISTER",
                uri: "sip:" + realm)
        }
        let v1 = IMSAKA.password(algorithm: .akav1MD5, res: v.res, ik: v.ik, ck: v.ck)
        #expect(response(.akav1MD5, v1) == "402ab8df9f3a4d63a9f47c2f90e02938")
        // The common bug — RES as hex text — must not give the same answer.
        #expect(response(.akav1MD5, Array(hex(v.res).utf8)) == "fdf3cf50a13e95188ad763670204f085")
        #expect(response(.akav1MD5, []) == "da492ad7b08bb89514f214f8c2fdb82b")
        let v2 = IMSAKA.password(algorithm: .akav2MD5, res: v.res, ik: v.ik, ck: v.ck)
        #expect(String(decoding: v2, as: UTF8.self) == "shzt3q8CWaZnCAWqs3WmEQ==")
        #expect(response(.akav2MD5, v2) == "6774a29ced9929f3dd734d9a97e04ebe")
    }

    @Test func algorithmNames() {
        #expect(DigestAlgorithm(parameter: nil) == .md5)
        #expect(DigestAlgorithm(parameter: "akav1-md5") == .akav1MD5)
        #expect(DigestAlgorithm(parameter: "SHA-256") == .sha256)
        #expect(DigestAlgorithm(parameter: "SHA-512-256") == nil)
    }
}
