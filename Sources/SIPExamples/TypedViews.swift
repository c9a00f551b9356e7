#if canImport(SIPCore)
    import SIPCore
#endif

/// Reads every typed header view of a message and ignores the results: what the unit
/// tests, the fuzz target and the benchmarks run over input that may be hostile.
public func exerciseTypedViews(_ message: SIPMessage) {
    let h = message.headers
    _ = try? h.vias
    _ = try? h.from
    _ = try? h.to
    _ = try? h.cseq
    _ = try? h.contact
    _ = try? h.path
    _ = try? h.route
    _ = try? h.recordRoute
    _ = try? h.serviceRoute
    _ = try? h.pAssociatedURI
    _ = try? h.authorizations()
    _ = try? h.challenges()
    _ = try? h.pChargingVector
    _ = try? h.expires
    _ = try? h.maxForwards
    _ = h.pVisitedNetworkIDs
    _ = h.supported
}
