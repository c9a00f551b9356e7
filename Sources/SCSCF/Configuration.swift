import NIOCore
import SIPAuth

/// What an operator sets for the registrar.
public struct SCSCFConfiguration: Sendable {
    /// Home domain and digest realm, e.g. `ims.example.com`.
    public var homeDomain: String
    /// Host (and port) of this S-CSCF, for Service-Route and GRUUs, e.g. `127.0.0.1:5060`.
    public var hostPort: String
    /// Source addresses (IP literals) whose `integrity-protected=auth-done` is honoured
    /// (SCS-1). From anyone else the parameter is ignored.
    public var trustedNodes: Set<String>
    /// Over TLS, the certificate names (DNS or IP subject alternative names) of trusted
    /// nodes: a trusted node's verified certificate must carry one. Empty: any certificate
    /// the TLS listener verified will do.
    public var trustedNodeNames: Set<String> = []
    /// Honour `auth-done` only over TLS with a verified certificate (SCS-1: an NDS-protected
    /// connection), never over plain UDP or TCP.
    public var trustedNodesRequireTLS = false
    /// Visited networks whose trusted nodes may claim `auth-done` (SCS-1: the request's
    /// `P-Visited-Network-ID` must be one of them). Empty: not checked.
    public var trustedNetworkIDs: Set<String> = []
    /// Shortest registration accepted (423 below it) and longest granted.
    public var minExpires: UInt32 = 60
    public var maxExpires: UInt32 = 600_000
    /// Used when neither Contact `expires` nor Expires says (RFC 3261 §10.2.1.1).
    public var defaultExpires: UInt32 = 3600
    /// Key for signed nonces; all S-CSCFs sharing registrations should share it.
    public var nonceKey: [UInt8]
    public var nonceLifetime: Duration = .seconds(300)
    /// How long an AKA challenge waits for its answer (reg-await-auth, SCS-32).
    public var akaChallengeLifetime: Duration = .seconds(60)

    public init(
        homeDomain: String, hostPort: String, trustedNodes: Set<String> = [], nonceKey: [UInt8] = NonceMinter.makeKey()
    ) {
        self.homeDomain = homeDomain
        self.hostPort = hostPort
        self.trustedNodes = trustedNodes
        self.nonceKey = nonceKey
    }
}
