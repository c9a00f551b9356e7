import NIOCore
import SIPAuth
import SIPCore
import Storage

/// What an operator sets for the registrar.
public struct SCSCFConfiguration: Sendable {
    /// Home domain and digest realm, e.g. `ims.example.com`.
    public var homeDomain: String
    /// Host (and port) of this S-CSCF, for Service-Route and GRUUs, e.g. `127.0.0.1:5060`.
    public var hostPort: String
    /// Source addresses (IP literals) of trusted nodes. Over TLS, when not empty, a trusted
    /// node must also come from one of them; over plain UDP/TCP they count only with
    /// `labTrustsPlainTransport`. An address alone never makes a node trusted.
    public var trustedNodes: Set<String>
    /// The certificate names (DNS or IP subject alternative names, lower case) of trusted
    /// nodes: `integrity-protected=auth-done` counts over TLS from a peer whose certificate
    /// the listener verified and carries one of them (SCS-1, TS 33.210 NDS/IP). Empty: no
    /// remote node is trusted; the in-process eP-CSCF always is.
    public var trustedNodeNames: Set<String> = []
    /// LAB ONLY: honour `auth-done` from a `trustedNodes` address over plain UDP or TCP.
    /// Anyone who can send from (or spoof) such an address can then register any user.
    public var labTrustsPlainTransport = false
    /// Visited networks whose trusted nodes may claim `auth-done` (SCS-1: the request's
    /// `P-Visited-Network-ID` must be one of them). Empty: not checked.
    public var trustedNetworkIDs: Set<String> = []
    /// Shortest registration accepted (423 below it) and longest granted.
    public var minExpires: UInt32 = 60
    public var maxExpires: UInt32 = 600_000
    /// Most bindings one public identity may hold (SCS-20, TS 24.229 5.4.1.2.2): a REGISTER
    /// that would add more gets 403; refreshes and removals always pass.
    public var maxContactsPerAOR = 20
    /// Used when neither Contact `expires` nor Expires says (RFC 3261 §10.2.1.1).
    public var defaultExpires: UInt32 = 3600
    /// Key for signed nonces; all S-CSCFs sharing registrations should share it.
    public var nonceKey: [UInt8]
    public var nonceLifetime: Duration = .seconds(300)
    /// Where Digest answers are claimed across nodes (PostgreSQL shared by several S-CSCFs,
    /// which share the nonce key too); nil for one node, whose own tracker sees every answer.
    public var nonceUses: (any NonceUseStore)?
    /// How long an AKA challenge waits for its answer (reg-await-auth, SCS-32).
    public var akaChallengeLifetime: Duration = .seconds(60)
    /// Where requests for other domains go (a trunk, another network), by domain (lower
    /// case); the entry for "" takes every other domain and the tel: numbers no subscriber
    /// here has. None: 404 for them.
    public var peers: [String: SIPURI] = [:]

    /// The next hop for a target outside the home domain (or a tel: number not ours).
    public func peer(for domain: String?) -> SIPURI? {
        if let domain, let peer = peers[domain.lowercased()] { return peer }
        return peers[""]
    }

    public init(
        homeDomain: String, hostPort: String, trustedNodes: Set<String> = [], nonceKey: [UInt8] = NonceMinter.makeKey()
    ) {
        self.homeDomain = homeDomain
        self.hostPort = hostPort
        self.trustedNodes = trustedNodes
        self.nonceKey = nonceKey
    }
}
