import Foundation
import MediaGateway
import SIPCore
import SIPProxy
import SIPTransport
import Synchronization

/// The media legs the eP-CSCF holds in its eIMS-AGW (TS 23.228 U.2.2): one per dialog side,
/// keyed by the SIP Call-ID and the WIC's flow, so that a call from one WIC to another —
/// one Call-ID crossing the eP-CSCF twice — has two. This is the edge's only dialog state.
final class MediaLegs: Sendable {
    struct Key: Hashable, Sendable {
        var callID: String
        var flowToken: String
    }

    struct Leg: Sendable {
        var gatewayCallID: String
        /// A 2xx carried the offer of an INVITE that had none (RFC 3264 §4, late offer):
        /// the answer comes in the ACK.
        var answerInACK = false
    }

    private let legs = Mutex<[Key: Leg]>([:])

    /// The gateway's call ID for the dialog side, if it has one.
    func gatewayCallID(_ key: Key) -> String? { legs.withLock { $0[key]?.gatewayCallID } }

    func add(_ key: Key, gatewayCallID: String) { legs.withLock { $0[key] = Leg(gatewayCallID: gatewayCallID) } }

    func remove(_ key: Key) -> String? { legs.withLock { $0.removeValue(forKey: key)?.gatewayCallID } }

    /// The next ACK of the dialog side carries the answer to an offer in a 2xx.
    func expectAnswerInACK(_ key: Key) { legs.withLock { $0[key]?.answerInACK = true } }

    /// The leg whose answer this ACK brings, once (a retransmitted ACK finds none).
    func takeAnswerInACK(_ key: Key) -> String? {
        legs.withLock { legs in
            guard let leg = legs[key], leg.answerInACK else { return nil }
            legs[key]?.answerInACK = false
            return leg.gatewayCallID
        }
    }

    /// Every leg of a flow, taken out (the flow has gone).
    func removeAll(flowToken: String) -> [String] {
        legs.withLock { legs in
            let gone = legs.filter { $0.key.flowToken == flowToken }
            for key in gone.keys { legs.removeValue(forKey: key) }
            return gone.values.map(\.gatewayCallID)
        }
    }

    /// Keeps only the legs whose gateway session is among `live`; the others' sessions
    /// ended in the gateway (its media timeout, a restart). How many went.
    func retain(only live: Set<String>) -> Int {
        legs.withLock { legs in
            let before = legs.count
            legs = legs.filter { live.contains($0.value.gatewayCallID) }
            return before - legs.count
        }
    }

    var count: Int { legs.withLock { $0.count } }
}

/// Why an offer did not go through the gateway, as the Warning (RFC 3261 §20.43) says it.
enum OfferFailure: Error, CustomStringConvertible {
    /// SDP the eP-CSCF cannot read, or the gateway refused: 488, warn-code 399.
    case unusable(String)
    /// Towards a browser without a codec it speaks (no transcoding): 488, warn-code 305.
    case incompatible(String)
    /// The gateway did not answer: 503.
    case unavailable

    var description: String {
        switch self {
        case .unusable(let why), .incompatible(let why): why
        case .unavailable: "Media gateway unavailable"
        }
    }
}

/// Which way a request crosses the eP-CSCF: from the WIC towards IMS, or towards the WIC.
enum MediaDirection {
    case fromWIC
    case towardsWIC

    /// Where an offer in the request goes; the answer in its response goes the other way.
    var offerSide: MediaSide { self == .fromWIC ? .ims : .webRTC }
    var answerSide: MediaSide { self == .fromWIC ? .webRTC : .ims }
}

/// What a request's media handling came to: refused (answered already), or on its way with a
/// rewriter for its responses (nil when nothing in them needs the gateway).
enum MediaStep {
    case refused
    case proceed(SIPResponseRewriter?)
}

extension EdgeProxy {
    /// The request's SDP offer through the gateway (the request rewritten in place), and
    /// what its responses need: the answer rewritten, or the leg deleted when the dialog
    /// fails or ends; a refusal is answered on `transaction`. Without a gateway
    /// (`--media-gateway none`) SDP passes through.
    func media(
        _ request: inout SIPRequest, flowToken: String, direction: MediaDirection, _ transaction: SIPServerTransaction
    ) async -> MediaStep {
        guard let gateway = configuration.mediaGateway, let callID = try? request.headers.callID else {
            return .proceed(nil)
        }
        let key = MediaLegs.Key(callID: callID, flowToken: flowToken)
        let initial = (try? request.headers.to.tag) == nil
        switch request.method {
        case .bye:
            // The dialog ends: so does its media, whoever hangs up.
            if let leg = mediaLegs.remove(key) { deleteMedia(leg, gateway: gateway) }
            return .proceed(nil)
        case .invite where initial:
            let leg =
                direction == .fromWIC
                ? MediaLegName.originating(callID) : MediaLegName.terminating(callID, flow: flowToken)
            mediaLegs.add(key, gatewayCallID: leg)
        default:
            break
        }
        guard let leg = mediaLegs.gatewayCallID(key) else { return .proceed(nil) }
        let fromTag = (try? request.headers.from.tag) ?? ""
        let endsOnFailure = request.method == .invite && initial
        let offered = Self.carriesSDP(request.headers, request.body)
        if offered {
            switch await offer(&request, leg: leg, fromTag: fromTag, towards: direction.offerSide, gateway: gateway) {
            case nil: break
            case let refusal?:
                // Nothing half set up: a session the gateway made before its reply was lost goes.
                if endsOnFailure, let leg = mediaLegs.remove(key) { deleteMedia(leg, gateway: gateway) }
                transaction.respond(refusal)
                return .refused
            }
        }
        // Nothing in the responses concerns the gateway (INFO, MESSAGE, an UPDATE without
        // SDP): they go back as they come, without a rewriter's task per response. An INVITE
        // without an offer gets one in its 2xx (RFC 3264 §4, late offer).
        guard offered || request.method == .invite else { return .proceed(nil) }
        let rewriter: SIPResponseRewriter = { [weak self] response in
            guard let self else { return response }
            if endsOnFailure, response.statusCode >= 300 {
                // No dialog (rejected, cancelled — 487 — or timed out): no media session.
                if let leg = self.mediaLegs.remove(key) { self.deleteMedia(leg, gateway: gateway) }
                return response
            }
            guard Self.carriesSDP(response.headers, response.body) else { return response }
            let toTag = (try? response.headers.to.tag) ?? ""
            var rewritten = response
            do {
                if offered {
                    rewritten.body = try await gateway.answer(
                        MediaAnswer(
                            callID: leg, fromTag: fromTag, toTag: toTag, sdp: response.body,
                            towards: direction.answerSide))
                } else if (200..<300).contains(response.statusCode) {
                    // The callee offers, back the way the INVITE came; its tag is the offerer's.
                    rewritten.body = try await self.offerThroughGateway(
                        response.body, leg: leg, offererTag: toTag, towards: direction.answerSide, gateway: gateway)
                    self.mediaLegs.expectAnswerInACK(key)
                }
                return rewritten
            } catch {
                // A proxy cannot turn a 2xx into a failure; the far end's media would not reach
                // the other side, so it is said loudly.
                EdgeMetrics.mediaFailures.increment()
                self.logger.warning("media gateway refused the SDP of a \(response.statusCode) for \(leg): \(error)")
                return response
            }
        }
        return .proceed(rewriter)
    }

    /// The ACK that answers an offer in a 2xx: its SDP through the gateway. An ACK cannot be
    /// refused; a failure is logged and counted, the ACK goes on as it came.
    func mediaInACK(_ ack: inout SIPRequest, flowToken: String, direction: MediaDirection) async {
        guard let gateway = configuration.mediaGateway, let callID = try? ack.headers.callID,
            Self.carriesSDP(ack.headers, ack.body),
            let leg = mediaLegs.takeAnswerInACK(MediaLegs.Key(callID: callID, flowToken: flowToken))
        else { return }
        do {
            // The INVITE's recipient (To) offered in its 2xx; the ACK's sender (From) answers.
            ack.body = try await gateway.answer(
                MediaAnswer(
                    callID: leg, fromTag: (try? ack.headers.to.tag) ?? "", toTag: (try? ack.headers.from.tag) ?? "",
                    sdp: ack.body, towards: direction.offerSide))
        } catch {
            EdgeMetrics.mediaFailures.increment()
            logger.warning("media gateway refused the answer in an ACK for \(leg): \(error)")
        }
    }

    /// nil when the request's offer went through the gateway (the body replaced); else the
    /// refusal: 488 for SDP that cannot be used (with a Warning saying why), 503 with
    /// Retry-After when the gateway does not answer.
    private func offer(
        _ request: inout SIPRequest, leg: String, fromTag: String, towards side: MediaSide, gateway: any MediaGateway
    ) async -> SIPResponse? {
        do throws(OfferFailure) {
            request.body = try await offerThroughGateway(
                request.body, leg: leg, offererTag: fromTag, towards: side, gateway: gateway)
            return nil
        } catch {
            switch error {
            case .unusable(let why): return mediaRefusal(request, 488, warning: 399, why)
            case .incompatible(let why): return mediaRefusal(request, 488, warning: 305, why)
            case .unavailable:
                EdgeMetrics.mediaFailures.increment()
                var refusal = mediaRefusal(request, 503, warning: 399, error.description)
                refusal.headers.append(SIPHeaderName("Retry-After"), "5")
                return refusal
            }
        }
    }

    /// An offer — a request's, or one a 2xx carries (late offer) — through the gateway, with
    /// `offererTag` the offering party's tag.
    func offerThroughGateway(
        _ sdp: [UInt8], leg: String, offererTag: String, towards side: MediaSide, gateway: any MediaGateway
    ) async throws(OfferFailure) -> [UInt8] {
        let description: SessionDescription
        do {
            description = try SessionDescription(parsing: sdp)
        } catch {
            throw .unusable("Malformed SDP: \(error)")
        }
        // The gateway does not transcode: a browser must be offered a codec it speaks.
        if side == .webRTC, let stream = description.streamWithoutCodec(in: SessionDescription.webRTCCodecs) {
            let offered = stream.codecs.isEmpty ? stream.formats : stream.codecs
            throw .incompatible(
                "Incompatible media format: no WebRTC codec in the \(stream.kind) stream (\(offered.joined(separator: " "))) and the media gateway does not transcode"
            )
        }
        do throws(MediaGatewayError) {
            return try await gateway.offer(MediaOffer(callID: leg, fromTag: offererTag, sdp: sdp, towards: side))
        } catch {
            switch error {
            case .refused(let reason):
                throw .unusable("Media gateway refused the SDP: \(reason)")
            case .noAnswer(let name), .malformedReply(let name):
                logger.warning("media gateway \(name) failed the offer for \(leg): \(error)")
                throw .unavailable
            }
        }
    }

    /// The edge's legs follow the gateway: a session it ended by itself (no media for its
    /// timeout, a day at most, or a restart) leaves the table, so dialogs that never saw a
    /// BYE cost nothing for long. Run now and then (`serve`'s housekeeping, every minute).
    public func reconcileMedia() async {
        guard let gateway = configuration.mediaGateway, mediaLegs.count > 0 else { return }
        do {
            let gone = mediaLegs.retain(only: Set(try await gateway.list()))
            if gone > 0 { logger.info("media: \(gone) leg(s) the gateway had ended left the table") }
        } catch {
            logger.warning("media gateway: could not list its sessions: \(error)")
        }
    }

    /// The flow has gone: every media session of its dialogs goes with it.
    func flowMediaEnded(_ flowToken: String) {
        guard let gateway = configuration.mediaGateway else { return }
        for leg in mediaLegs.removeAll(flowToken: flowToken) { deleteMedia(leg, gateway: gateway) }
    }

    func deleteMedia(_ leg: String, gateway: any MediaGateway) {
        Task {
            do {
                try await gateway.delete(callID: leg)
            } catch {
                EdgeMetrics.mediaFailures.increment()
                logger.warning("media gateway: could not delete \(leg): \(error)")
            }
        }
    }

    /// RFC 3261 §20.43: `Warning: <code> <agent> "<text>"`.
    func mediaRefusal(_ request: SIPRequest, _ status: Int, warning: Int, _ text: String) -> SIPResponse {
        var response = refusal(request, status)
        let quoted = text.replacingOccurrences(of: "\\", with: "").replacingOccurrences(of: "\"", with: "'")
        response.headers.append(.warning, "\(warning) \(configuration.sipHost) \"\(quoted)\"")
        return response
    }

    /// A body of `application/sdp` (RFC 3264's offer or answer).
    static func carriesSDP(_ headers: SIPHeaderFields, _ body: [UInt8]) -> Bool {
        guard !body.isEmpty, let type = headers[.contentType] else { return false }
        return type.split(separator: ";").first?.trimmingCharacters(in: .whitespaces).lowercased() == "application/sdp"
    }
}
