import Foundation
import HSS
import Logging
import SIPCore
import SIPTransport
import Storage
import Synchronization
import Utilities

/// The reg event package (RFC 3680; SCS-31): SUBSCRIBE to a public identity's
/// registration state, a full-state NOTIFY at once and another on every change.
/// Subscriptions live in memory on the S-CSCF that accepted them.
final class RegEventService: Sendable {
    struct Subscription: Sendable {
        var watched: String  // the IMPU whose registration set is watched
        var implicitSet: [String]
        var callID: String
        var localTag: String
        var remote: String  // the subscriber's From, with its tag: the NOTIFY's To
        var local: String  // the SUBSCRIBE's To, plus our tag: the NOTIFY's From
        var remoteTarget: AnyURI
        var routeSet: [SIPAddress]
        var cseq: UInt32
        var version: UInt32
        var expiresAt: Date
    }

    let subscriptions = Mutex<[String: Subscription]>([:])
    let endpoint = Mutex<SIPEndpoint?>(nil)
    let contactURI: String
    let logger: Logger

    init(contactURI: String, logger: Logger) {
        self.contactURI = contactURI
        self.logger = logger
    }

    static func key(callID: String, localTag: String) -> String { callID + "|" + localTag }

    /// Creates, refreshes or (Expires: 0) ends a subscription; returns the response and, on
    /// success, the subscription key for the NOTIFY that must follow.
    func subscribe(_ request: SIPRequest, registration: RegistrationData, expires: UInt32, toTag: String, now: Date)
        -> (SIPResponse, String?)
    {
        guard let callID = try? request.headers.callID, let from = request.headers[.from],
            let to = try? request.headers.to,
            case .contacts(let contacts)? = try? request.headers.contact, let target = contacts.first?.uri
        else {
            return (
                SIPResponse(replyingTo: request, statusCode: 400, reasonPhrase: "Missing Contact", toTag: toTag), nil
            )
        }
        let localTag = to.tag ?? toTag
        let key = Self.key(callID: callID, localTag: localTag)
        var local = to
        local.tag = localTag
        let routeSet = (try? request.headers.recordRoute) ?? []
        subscriptions.withLock { table in
            var subscription =
                table[key]
                ?? Subscription(
                    watched: registration.impu.uri, implicitSet: registration.implicitSet, callID: callID,
                    localTag: localTag, remote: from, local: local.description, remoteTarget: target,
                    routeSet: routeSet,
                    cseq: 0, version: 0, expiresAt: now)
            subscription.remoteTarget = target
            subscription.expiresAt = now.addingTimeInterval(TimeInterval(expires))
            table[key] = subscription
        }
        var ok = SIPResponse(replyingTo: request, statusCode: 200, toTag: localTag)
        ok.headers.append(.expires, String(expires))
        ok.headers.append(.contact, "<\(contactURI)>")
        return (ok, key)
    }

    /// Sends the NOTIFY of one subscription with the current state of its registrations.
    func notify(_ key: String, bindings: [String: [Binding]], terminated: [Binding] = [], now: Date) async {
        guard let endpoint = endpoint.withLock({ $0 }) else { return }
        let prepared: (SIPRequest, SIPDestination)? = subscriptions.withLock { table in
            guard var s = table[key] else { return nil }
            s.cseq += 1
            let remaining = max(0, Int(s.expiresAt.timeIntervalSince(now)))
            let state = remaining > 0 ? "active;expires=\(remaining)" : "terminated;reason=timeout"
            let body = Self.reginfo(
                version: s.version, implicitSet: s.implicitSet, bindings: bindings, terminated: terminated, now: now)
            s.version += 1
            if remaining == 0 { table.removeValue(forKey: key) } else { table[key] = s }
            var headers = SIPHeaderFields()
            for route in s.routeSet { headers.append(.route, route.description) }
            headers.append(.from, s.local)
            headers.append(.to, s.remote)
            headers.append(.callID, s.callID)
            headers.append(.cseq, SIPCSeq(s.cseq, .notify).description)
            headers.append(.contact, "<\(contactURI)>")
            headers.append(.event, "reg")
            headers.append(.subscriptionState, state)
            headers.append(.contentType, "application/reginfo+xml")
            let request = SIPRequest(method: .notify, uri: s.remoteTarget, headers: headers, body: Array(body.utf8))
            // RFC 3261 §8.1.2: the first Route (loose routing) or else the target itself.
            let next = s.routeSet.first?.uri.sipURI ?? s.remoteTarget.sipURI
            guard let next, let destination = SIPDestination(uri: next) else { return nil }
            return (request, destination)
        }
        guard let (request, destination) = prepared else { return }
        let response = await endpoint.send(request, to: destination)
        if [404, 408, 430, 481].contains(response.statusCode) || response.statusCode >= 500 {
            // The watcher is gone (RFC 6665 §4.2.2; 430: its flow failed, RFC 5626): drop it.
            _ = subscriptions.withLock { $0.removeValue(forKey: key) }
        }
    }

    /// Keys of the subscriptions that watch any of these IMPUs.
    func watchers(of impus: [String]) -> [String] {
        subscriptions.withLock { table in
            table.filter { _, s in s.implicitSet.contains { impus.contains($0) } || impus.contains(s.watched) }.map(
                \.key)
        }
    }

    /// RFC 3680 §5.3 `application/reginfo+xml`, always full state.
    static func reginfo(
        version: UInt32, implicitSet: [String], bindings: [String: [Binding]], terminated: [Binding], now: Date
    )
        -> String
    {
        var xml = "<?xml version=\"1.0\"?>\n"
        xml += "<reginfo xmlns=\"urn:ietf:params:xml:ns:reginfo\" version=\"\(version)\" state=\"full\">\n"
        let nowSeconds = Int64(now.timeIntervalSince1970)
        for (index, aor) in implicitSet.enumerated() {
            let active = bindings[aor] ?? []
            let gone = terminated.filter { $0.aor == aor }
            let state = active.isEmpty ? (gone.isEmpty ? "init" : "terminated") : "active"
            xml += "  <registration aor=\"\(escapeMarkup(aor))\" id=\"r\(index)\" state=\"\(state)\">\n"
            for (n, b) in active.enumerated() {
                xml +=
                    "    <contact id=\"c\(index)-\(n)\" state=\"active\" event=\"registered\" expires=\"\(max(0, b.expiresAt - nowSeconds))\">"
                xml += "<uri>\(escapeMarkup(b.contact))</uri></contact>\n"
            }
            for (n, b) in gone.enumerated() {
                xml += "    <contact id=\"t\(index)-\(n)\" state=\"terminated\" event=\"unregistered\">"
                xml += "<uri>\(escapeMarkup(b.contact))</uri></contact>\n"
            }
            xml += "  </registration>\n"
        }
        xml += "</reginfo>\n"
        return xml
    }
}
