import Foundation
import SIPCore
import SIPExamples

/// The spec.md §9 messages (from WebIMSTesting) and parse helpers for the tests.
enum Fixtures {
    static let token = SpecMessages.token
    static let register92 = SpecMessages.register92
    static let register94 = SpecMessages.register94
    static let ok95 = SpecMessages.ok95
    static func crlf(_ text: String) -> String { SpecMessages.crlf(text) }

    static func request(_ text: String) throws -> SIPRequest {
        guard case .request(let r) = try SIPParser().parse(text) else { throw FixtureError.notARequest }
        return r
    }

    static func response(_ text: String) throws -> SIPResponse {
        guard case .response(let r) = try SIPParser().parse(text) else { throw FixtureError.notAResponse }
        return r
    }

    enum FixtureError: Error { case notARequest, notAResponse }
}
