/// The eIMS-AGW as the eP-CSCF sees it (TS 23.228 Annex U.2.2): a media session per side of
/// the eP-CSCF whose SDP it rewrites on every offer and answer. 3GPP's Iq reference point is
/// H.248 (TS 23.334); here rtpengine's ng protocol stands in for it (`NGClient`), behind this
/// protocol so that another gateway control could take its place.
public protocol MediaGateway: Sendable {
    /// The offer rewritten for the side it goes to; the session is made on first use.
    func offer(_ offer: MediaOffer) async throws(MediaGatewayError) -> [UInt8]
    /// The answer rewritten for the side it goes back to.
    func answer(_ answer: MediaAnswer) async throws(MediaGatewayError) -> [UInt8]
    /// Ends the session `callID` names (every tag of it); an unknown call is not an error.
    func delete(callID: String) async throws(MediaGatewayError)
    /// The session's state, or nil when the gateway holds none for `callID`.
    func query(callID: String) async throws(MediaGatewayError) -> MediaSessionStatus?
    /// The call IDs of every session the gateway holds.
    func list() async throws(MediaGatewayError) -> [String]
}

/// Which kind of peer an SDP is on its way to: the browser (ICE, DTLS-SRTP, rtcp-mux,
/// `UDP/TLS/RTP/SAVPF`) or IMS (plain `RTP/AVP`).
public enum MediaSide: Sendable, Hashable {
    case webRTC
    case ims
}

/// One media session in the gateway: one side of the eP-CSCF for one dialog. A WIC-to-WIC
/// call crosses the eP-CSCF twice with one SIP Call-ID, so the gateway's call ID names the
/// side as well (`MediaLegName`).
public struct MediaOffer: Sendable, Hashable {
    public var callID: String
    /// The tag of the party whose offer this is (the From tag of the request carrying it).
    public var fromTag: String
    public var sdp: [UInt8]
    public var towards: MediaSide

    public init(callID: String, fromTag: String, sdp: [UInt8], towards: MediaSide) {
        self.callID = callID
        self.fromTag = fromTag
        self.sdp = sdp
        self.towards = towards
    }
}

public struct MediaAnswer: Sendable, Hashable {
    public var callID: String
    /// The offerer's tag and the answerer's, as in the offer's `MediaOffer.fromTag`.
    public var fromTag: String
    public var toTag: String
    public var sdp: [UInt8]
    public var towards: MediaSide

    public init(callID: String, fromTag: String, toTag: String, sdp: [UInt8], towards: MediaSide) {
        self.callID = callID
        self.fromTag = fromTag
        self.toTag = toTag
        self.sdp = sdp
        self.towards = towards
    }
}

/// What `query` tells of a session.
public struct MediaSessionStatus: Sendable, Hashable {
    /// The tags (parties) the gateway knows in the session.
    public var tags: [String]
    /// Unix seconds the session was made, when the gateway says.
    public var created: Int?

    public init(tags: [String], created: Int?) {
        self.tags = tags
        self.created = created
    }
}

public enum MediaGatewayError: Error, Sendable, Hashable {
    /// No reply after every retry: the eP-CSCF answers 503 with Retry-After.
    case noAnswer(gateway: String)
    /// The gateway refused the request (e.g. SDP it could not parse): 488.
    case refused(reason: String)
    /// A reply that is not a bencoded dictionary with a result.
    case malformedReply(gateway: String)
}

/// The gateway call ID of each side of the eP-CSCF for one SIP Call-ID: a call from one WIC
/// to another crosses the eP-CSCF once as originating and once as terminating — and a call
/// forked to several WICs of one user once per flow, each branch with a session of its own
/// (the losers' go with their CANCEL, never the winner's).
public enum MediaLegName {
    public static func originating(_ sipCallID: String) -> String { sipCallID + "~orig" }
    public static func terminating(_ sipCallID: String, flow: String) -> String { sipCallID + "~term~" + flow }
}
