import Testing

@testable import WebAuth

/// Issue 26 item 12: the login limits key on the part of a source address one network
/// owns, so an IPv6 host cannot step around them by picking another address of its /64.
@Suite struct SourcePrefixTests {
    @Test func item12IPv6SourcesCountPerSlash64AndIPv4PerAddress() {
        #expect(sourcePrefix("2001:db8:1:2::1") == sourcePrefix("2001:db8:1:2:ffff:ffff:ffff:ffff"))
        #expect(sourcePrefix("2001:db8:1:2::1") != sourcePrefix("2001:db8:1:3::1"))
        #expect(sourcePrefix("2001:db8:1:2::1") == "20010db800010002::/64")
        #expect(sourcePrefix("192.0.2.7") == "192.0.2.7")
        #expect(sourcePrefix("192.0.2.7") != sourcePrefix("192.0.2.8"))
        // IPv4 in IPv6 clothing stays one address; text that is no address stays as it is.
        #expect(sourcePrefix("::ffff:192.0.2.7") != sourcePrefix("::ffff:192.0.2.8"))
        #expect(sourcePrefix("not an address") == "not an address")
    }

}
