import NIOCore
import NIOSSL
import SIPCore
public enum SIPTransportPlaceholder {}
