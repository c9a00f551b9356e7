import HSS
import Storage
import Testing
import WebIMSTesting

/// The registrar's synchronous reads (a refresh makes no async call for them) give what the
/// async reads give, and nothing before a first read.
@Suite struct CachedReadTests {
    @Test(arguments: StoreBackend.available)
    func cachedHSSDataMatchesTheReadAndFindsNonCanonicalIMPUs(backend: StoreBackend) async throws {
        let (store, _) = try await backend.makeFreshStore()
        let impi = "carol@ims.example.com"
        try await store.put(
            SubscriberRecord(
                impi: impi, realm: "ims.example.com",
                publicIdentities: [
                    PublicIdentity(uri: "sip:carol@ims.example.com"), PublicIdentity(uri: "tel:+15550001111"),
                    PublicIdentity(uri: "sip:carol.old@ims.example.com", barred: true),
                ],
                allowedSchemes: [.trustedNode]))
        let hss = HSS(store: store)
        #expect(try hss.cachedRegistrationData(impi: impi, impu: "sip:carol@ims.example.com") == nil)
        let read = try await hss.registrationData(impi: impi, impu: "sip:carol@ims.example.com")
        #expect(read.implicitSet == ["sip:carol@ims.example.com", "tel:+15550001111"])
        #expect(try hss.cachedRegistrationData(impi: impi, impu: "sip:carol@ims.example.com") == read)
        // Not as provisioned (host case, a URI parameter): found by its canonical form.
        let loose = try #require(
            try hss.cachedRegistrationData(impi: impi, impu: "sip:carol@IMS.Example.COM;transport=tcp"))
        #expect(loose.impu.uri == "sip:carol@ims.example.com")
        #expect(try hss.cachedRegistrationData(impi: impi, impu: "sip:carol.old@ims.example.com")?.impu.barred == true)
        #expect(throws: HSSError.identitiesDontMatch) {
            try hss.cachedRegistrationData(impi: impi, impu: "sip:mallory@ims.example.com")
        }
        await store.close()
    }

    @Test(arguments: StoreBackend.available)
    func cachedBindingsAreTheStoredOnesOrNothing(backend: StoreBackend) async throws {
        let (store, _) = try await backend.makeFreshStore()
        let aor = "sip:carol@ims.example.com"
        let binding = Binding(
            aor: aor, contact: "sip:carol@192.0.2.7", contactHeader: "<sip:carol@192.0.2.7>",
            impi: "carol@ims.example.com", expiresAt: 2_000, callID: "c1", cseq: 1, scheme: .trustedNode)
        try await store.apply(upserts: [binding], removals: [])
        let read = try await store.bindings(aor: aor, now: 1_000)
        #expect(read == [binding])
        // SQLite keeps them in memory; PostgreSQL, shared between nodes, always reads.
        switch backend {
        case .sqlite:
            #expect(store.cachedBindings(aor: aor, now: 1_000) == read)
            #expect(store.cachedBindings(aor: aor, now: 2_000) == [])  // lapsed
        case .postgres:
            #expect(store.cachedBindings(aor: aor, now: 1_000) == nil)
        }
        await store.close()
    }
}
