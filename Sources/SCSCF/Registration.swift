import Foundation
import HSS
import SIPAuth
import SIPCore
import Storage

extension Registrar {
    /// After authentication: identity checks, contact bookkeeping, a durable commit, then
    /// the 200 OK of SCS-24 (RFC 3261 §10.3 steps 5–8; RFC 5626 §6; RFC 3327; RFC 3608).
    func completeRegistration(
        _ request: SIPRequest, impi: String, impu: String, scheme: AuthScheme, tna: TrustedNodeAuthorization?,
        callID: String, cseq: UInt32
    ) async -> SIPResponse {
        await registrationTurns.run(impi: impi) {
            await completeRegistrationInTurn(
                request, impi: impi, impu: impu, scheme: scheme, tna: tna, callID: callID, cseq: cseq)
        }
    }

    /// The bindings change one REGISTER makes, decided on the bindings read in its turn.
    struct BindingPlan {
        var existing: [Binding]
        /// `existing`'s keys: built text, so once per binding, not once per comparison.
        var existingKeys: [String]
        var upserts: [Binding] = []
        var removals: [BindingRemoval] = []
        var pathTexts: [String]
        var firstPathHasOB: Bool
    }

    /// The parts of a REGISTER that name bindings.
    struct BindingHeaders {
        var path: [SIPAddress]
        var contact: SIPContactValue?
        var expires: UInt32?
    }

    // The async steps (HSS data, the bindings, the commit) are all this function does; what
    // lies between them runs in synchronous functions kept out of line, so the task's frame
    // holds only what crosses a suspension. Refreshes find the HSS data and the bindings in
    // memory and make no async call but the commit.
    private func completeRegistrationInTurn(
        _ request: SIPRequest, impi: String, impu: String, scheme: AuthScheme, tna: TrustedNodeAuthorization?,
        callID: String, cseq: UInt32
    ) async -> SIPResponse {
        let data: RegistrationData
        do {
            data = try await registrationData(impi: impi, impu: impu)
        } catch {
            return reply(request, 403, "Forbidden")
        }
        let headers: BindingHeaders
        switch admit(request, data: data, scheme: scheme, tna: tna) {
        case .failure(let answer): return answer.response
        case .success(let parsed): headers = parsed
        }
        let now = Int64(clock().timeIntervalSince1970)
        let existing: [Binding]
        if let cached = bindings.cachedBindings(aor: impu, now: now) {
            existing = cached
        } else {
            do {
                existing = try await bindings.bindings(aor: impu, now: now)
            } catch {
                return reply(request, 500, "Storage Unavailable")
            }
        }
        let plan: BindingPlan
        switch planBindings(
            request, headers: headers, impi: impi, impu: impu, data: data, scheme: scheme, callID: callID, cseq: cseq,
            existing: existing, now: now)
        {
        case .failure(let answer): return answer.response
        case .success(let made): plan = made
        }
        if !plan.upserts.isEmpty || !plan.removals.isEmpty {
            do {
                // The 200 OK goes out only once this commit is durable (issue: durability).
                try await bindings.apply(upserts: plan.upserts, removals: plan.removals)
            } catch {
                logger.error("binding commit failed: \(error)")
                return reply(request, 500, "Storage Unavailable")
            }
        }
        return finishRegistration(request, plan: plan, impu: impu, data: data, now: now)
    }

    /// A final answer that ends a registration early (a `Result` failure, so the plans
    /// above can be `Result`s).
    struct EarlyAnswer: Error {
        var response: SIPResponse
    }

    /// Barring, the subscriber's schemes, a third-party WAF/WWSF, and the headers read.
    @inline(never)
    func admit(_ request: SIPRequest, data: RegistrationData, scheme: AuthScheme, tna: TrustedNodeAuthorization?)
        -> Result<BindingHeaders, EarlyAnswer>
    {
        guard !data.impu.barred else { return .failure(EarlyAnswer(response: reply(request, 403, "Barred Identity"))) }
        // A trusted node may always take registrations down (EPC-33: a WIC's flow died),
        // whatever scheme registered them; anything else needs the subscriber's scheme.
        guard data.subscriber.allowedSchemes.contains(scheme) || (scheme == .trustedNode && isRemovalOnly(request))
        else {
            return .failure(EarlyAnswer(response: reply(request, 403, "Scheme Not Allowed")))
        }
        if let tna, tna.wafID != nil || tna.wwsfID != nil {
            // SCS-4 / HSS-5: a third-party authorization entity must be on the subscription's list.
            // Identities compare whole (an issuer URL, a WWSF origin), a trailing / aside.
            func listed(_ id: String, in allowed: [String]) -> Bool {
                let wanted = id.hasSuffix("/") ? String(id.dropLast()) : id
                return allowed.contains { ($0.hasSuffix("/") ? String($0.dropLast()) : $0) == wanted }
            }
            let wafOK = tna.wafID.map { listed($0, in: data.subscriber.allowedWAFs) } ?? true
            let wwsfOK = tna.wwsfID.map { listed($0, in: data.subscriber.allowedWWSFs) } ?? true
            guard wafOK && wwsfOK else {
                return .failure(EarlyAnswer(response: reply(request, 403, "Authorization Entity Not Allowed")))
            }
        }
        do {
            return .success(
                BindingHeaders(
                    path: try request.headers.path, contact: try request.headers.contact,
                    expires: try request.headers.expires))
        } catch {
            return .failure(EarlyAnswer(response: reply(request, 400, error.reasonPhrase)))
        }
    }

    /// What to store and remove (RFC 3261 §10.3 steps 5–7, RFC 5626 §6), or the answer
    /// that refuses the request.
    @inline(never)
    func planBindings(
        _ request: SIPRequest, headers: BindingHeaders, impi: String, impu: String, data: RegistrationData,
        scheme: AuthScheme, callID: String, cseq: UInt32, existing: [Binding], now: Int64
    ) -> Result<BindingPlan, EarlyAnswer> {
        func answer(_ code: Int, _ reason: String? = nil) -> Result<BindingPlan, EarlyAnswer> {
            .failure(EarlyAnswer(response: reply(request, code, reason)))
        }
        let path = headers.path
        let expiresHeader = headers.expires
        let firstPathHasOB = path.first?.uri.sipURI?.parameters.contains("ob") ?? false
        let aors = data.implicitSet.isEmpty ? [impu] : data.implicitSet
        var plan = BindingPlan(
            existing: existing, existingKeys: existing.map(\.key), pathTexts: path.map(\.description),
            firstPathHasOB: firstPathHasOB)
        var removedAny = false
        var onlyRemovals = true
        switch headers.contact {
        case nil:
            onlyRemovals = false  // a query: just list the bindings (RFC 3261 §10.2.3)
        case .wildcard?:
            // RFC 3261 §10.2.2: `*` only with Expires: 0.
            guard expiresHeader == 0 else { return answer(400, "Wildcard Needs Expires 0") }
            for b in existing where b.impi == impi {
                if b.callID == callID && b.cseq >= cseq { return answer(500, "Out of Order") }
                // Only the registration read here (see BindingRemoval).
                for aor in aors { plan.removals.append(BindingRemoval(aor: aor, key: b.key, onlyIf: b.version)) }
                removedAny = true
            }
        case .contacts(let contacts)?:
            for contact in contacts {
                let requested = contact.expires ?? expiresHeader ?? configuration.defaultExpires
                let regID = contact.regID
                let instance = contact.instance
                if regID != nil && !path.isEmpty && !firstPathHasOB {
                    // RFC 5626 §6: reg-id needs an outbound-aware first hop.
                    return answer(439)
                }
                let uriText = contact.uri.description
                let candidate = Binding(
                    // The stored Contact is `<uri>`: what SIPAddress(uri:) prints, without printing the URI twice.
                    aor: impu, contact: uriText, contactHeader: "<" + uriText + ">",
                    instance: instance, regID: instance == nil ? nil : regID, impi: impi, expiresAt: 0, callID: callID,
                    cseq: cseq, path: plan.pathTexts, scheme: scheme)
                let key = candidate.key
                let old = plan.existingKeys.firstIndex(of: key).map { existing[$0] }
                if let old, old.callID == callID, old.cseq >= cseq {
                    return answer(500, "Out of Order")  // RFC 3261 §10.3 step 7
                }
                if requested == 0 {
                    // RFC 5626: an outbound binding belongs to its flow. A removal sent for
                    // an old flow (another Call-ID, another Path) after the same instance
                    // re-registered over a new one — the eP-CSCF's flow-close clean-up racing
                    // a page reload — must not take the new registration away.
                    if let old, candidate.instance != nil,
                        old.callID != callID, !path.isEmpty, old.path != candidate.path
                    {
                        removedAny = true
                        continue
                    }
                    // Nothing stored under this key as read: nothing to take away. What is
                    // there is taken only while it is still what was read (BindingRemoval).
                    guard let old else { continue }
                    removedAny = true
                    for aor in aors { plan.removals.append(BindingRemoval(aor: aor, key: key, onlyIf: old.version)) }
                    continue
                }
                onlyRemovals = false
                if requested < configuration.minExpires {
                    var response = reply(request, 423)
                    response.headers.append(.minExpires, String(configuration.minExpires))
                    return .failure(EarlyAnswer(response: response))
                }
                var binding = candidate
                binding.expiresAt = now + Int64(min(requested, configuration.maxExpires))
                for aor in aors {
                    binding.aor = aor
                    plan.upserts.append(binding)
                }
            }
            if onlyRemovals && !removedAny { return answer(481) }  // SCS-30
            if exceedsContactLimit(plan, impu: impu) { return answer(403, "Too Many Contacts") }
        }
        return .success(plan)
    }

    /// SCS-20: whether the plan would leave `impu` with more bindings than allowed. Only a
    /// plan that adds a binding can; a refresh or removal is never refused for it.
    func exceedsContactLimit(_ plan: BindingPlan, impu: String) -> Bool {
        var added = 0
        for binding in plan.upserts where binding.aor == impu && !plan.existingKeys.contains(binding.key) {
            added += 1
        }
        guard added > 0 else { return false }
        var removed = 0
        for removal in plan.removals where removal.aor == impu && plan.existingKeys.contains(removal.key) {
            removed += 1
        }
        return plan.existingKeys.count - removed + added > configuration.maxContactsPerAOR
    }

    /// After the commit: the watchers told, and the 200 OK with what the store now holds.
    @inline(never)
    func finishRegistration(_ request: SIPRequest, plan: BindingPlan, impu: String, data: RegistrationData, now: Int64)
        -> SIPResponse
    {
        // What the store now holds for this IMPU, without reading it back: the bindings
        // found before, minus the removed, with the upserted replacing or joining them.
        // A refresh removes nothing: no set to make. The lists are sized once (an AOR's
        // every binding passes through them on every refresh).
        let removedKeys: Set<String> =
            plan.removals.isEmpty ? [] : Set(plan.removals.filter { $0.aor == impu }.map(\.key))
        var current: [Binding] = []
        var currentKeys: [String] = []
        current.reserveCapacity(plan.existing.count + plan.upserts.count)
        currentKeys.reserveCapacity(plan.existing.count + plan.upserts.count)
        var removed: [Binding] = []
        for (b, key) in zip(plan.existing, plan.existingKeys) {
            if removedKeys.contains(key) {
                removed.append(b)
            } else {
                current.append(b)
                currentKeys.append(key)
            }
        }
        for b in plan.upserts where b.aor == impu {
            let key = b.key
            if let i = currentKeys.firstIndex(of: key) {
                current[i] = b
            } else {
                current.append(b)
                currentKeys.append(key)
            }
        }
        if !plan.upserts.isEmpty || !plan.removals.isEmpty {
            announce(data: data, current: current, removed: removed)
        }
        return okResponse(
            request, impu: impu, data: data, current: current, path: plan.pathTexts, now: now,
            outbound: plan.firstPathHasOB && plan.upserts.contains { $0.regID != nil })
    }

    func isRemovalOnly(_ request: SIPRequest) -> Bool {
        let header = (try? request.headers.expires) ?? nil
        switch (try? request.headers.contact) ?? nil {
        case .wildcard?: return header == 0
        case .contacts(let contacts)?: return !contacts.isEmpty && contacts.allSatisfy { ($0.expires ?? header) == 0 }
        case nil: return false
        }
    }

    /// Deletes bindings whose time has passed and tells their watchers (RFC 3680 event
    /// `expired`). `serve` calls this every few seconds.
    public func removeExpiredBindings() async {
        let now = clock()
        if let uses = configuration.nonceUses {
            try? await uses.pruneNonceUses(now: Int64(now.timeIntervalSince1970))
        }
        guard let expired = try? await bindings.removeExpired(now: Int64(now.timeIntervalSince1970)), !expired.isEmpty
        else {
            return
        }
        var announced = Set<String>()
        // One NOTIFY per registration set: its bindings were stored once per IMPU of the set.
        for binding in expired where !announced.contains(binding.impi) {
            announced.insert(binding.impi)
            guard let data = try? await hss.registrationData(impi: binding.impi, impu: binding.aor) else { continue }
            let current = (try? await bindings.bindings(aor: binding.aor, now: Int64(now.timeIntervalSince1970))) ?? []
            announce(data: data, current: current, removed: expired.filter { $0.aor == binding.aor })
        }
    }

    /// NOTIFY every watcher of this registration set (RFC 3680 §5.2: on every change).
    func announce(data: RegistrationData, current: [Binding], removed: [Binding]) {
        let keys = regEvent.watchers(of: data.implicitSet)
        guard !keys.isEmpty else { return }
        var state: [String: [Binding]] = [:]
        var terminated: [Binding] = []
        for aor in data.implicitSet {
            state[aor] = current.map {
                var b = $0; b.aor = aor; return b
            }
            terminated += removed.map {
                var b = $0; b.aor = aor; return b
            }
        }
        let now = clock()
        let service = regEvent
        for key in keys {
            Task { await service.notify(key, bindings: state, terminated: terminated, now: now) }
        }
    }

    func okResponse(
        _ request: SIPRequest, impu: String, data: RegistrationData, current: [Binding], path: [String], now: Int64,
        outbound: Bool
    ) -> SIPResponse {
        var ok = reply(request, 200)
        let associated = data.implicitSet.map { "<\($0)>" }.joined(separator: ", ")
        var contactBytes = 0
        for b in current { contactBytes += b.contactHeader.utf8.count + 2 * (b.instance?.utf8.count ?? 0) + 64 }
        ok.headers.reserveCapacity(
            fields: current.count + path.count + 4,
            bytes: contactBytes + impu.utf8.count * current.count + path.reduce(0) { $0 + $1.utf8.count }
                + associated.utf8.count + configuration.hostPort.utf8.count + 160)
        for b in current {
            // Written into the response's own bytes: an AOR's every binding is listed in
            // every 200 (RFC 3261 §10.3 step 8), and a String per Contact was two mallocs
            // each (issue 31: ten contacts should cost no more than 1.5× one).
            if Self.isPlainContact(b) {
                ok.headers.append(.contact) { Self.writeContact(b, impu: impu, now: now, to: &$0) }
            } else if let contact = contactByParsing(b, impu: impu, now: now) {
                ok.headers.append(.contact, contact)
            }
        }
        for p in path { ok.headers.append(.path, p) }
        ok.headers.append(.serviceRoute, "<sip:orig@\(configuration.hostPort);lr>")
        ok.headers.append(.pAssociatedURI, associated)
        if outbound { ok.headers.append(.require, "outbound") }
        if let pcv = try? request.headers.pChargingVector {
            var params = pcv
            if let orig = pcv["orig-ioi"] { params.set("term-ioi", orig) }
            params.set("orig-ioi", configuration.homeDomain)
            ok.headers.append(.pChargingVector, String(params.description.dropFirst()))
        }
        return ok
    }

    /// The 200 OK Contact of a binding: its stored Contact with `expires` and, for an
    /// outbound binding, `+sip.instance`, `reg-id` and `pub-gruu` set.
    func contactByParsing(_ b: Binding, impu: String, now: Int64) -> String? {
        guard var address = try? SIPAddress.parse(b.contactHeader) else { return nil }
        address.parameters.set("expires", String(max(0, b.expiresAt - now)))
        if let instance = b.instance {
            address.parameters.set("+sip.instance", quote("<\(instance)>"))
            if let regID = b.regID { address.parameters.set("reg-id", String(regID)) }
            // RFC 5627 §5: a public GRUU is the AOR with the instance id in `gr`.
            address.parameters.set("pub-gruu", quote("\(impu);gr=\(instance)"))
        }
        return address.description
    }

    /// Whether a binding's Contact is stored as `<uri>` (how `completeRegistration` stores
    /// them), which `writeContact` writes without parsing it.
    static func isPlainContact(_ b: Binding) -> Bool {
        b.contactHeader.utf8.first == UInt8(ascii: "<") && b.contactHeader.utf8.last == UInt8(ascii: ">")
            && !b.contactHeader.utf8.dropFirst().contains(UInt8(ascii: "<"))
    }

    /// The 200 OK Contact of a plain binding (`isPlainContact`), written directly: the same
    /// text `SIPAddress` would give after setting these parameters in this order, without
    /// parsing and re-printing it for every binding of every REGISTER.
    static func writeContact(_ b: Binding, impu: String, now: Int64, to out: inout [UInt8]) {
        out.append(contentsOf: b.contactHeader.utf8)
        out.append(contentsOf: ";expires=".utf8)
        out.append(contentsOf: String(max(0, b.expiresAt - now)).utf8)
        guard let instance = b.instance else { return }
        out.append(contentsOf: ";+sip.instance=\"<".utf8)
        out.appendQuotedStringContent(instance)
        out.append(contentsOf: ">\"".utf8)
        if let regID = b.regID {
            out.append(contentsOf: ";reg-id=".utf8)
            out.append(contentsOf: String(regID).utf8)
        }
        // RFC 5627 §5: a public GRUU is the AOR with the instance id in `gr`.
        out.append(contentsOf: ";pub-gruu=\"".utf8)
        out.appendQuotedStringContent(impu)
        out.append(contentsOf: ";gr=".utf8)
        out.appendQuotedStringContent(instance)
        out.append(UInt8(ascii: "\""))
    }
}
