import Foundation
import SIPCore
import Testing

/// The RFC 4475 torture messages (Tests/Interop/rfc4475), each judged as the RFC says: the
/// parser plus `checkSyntax` (what every transport runs before anything else).
@Suite struct RFC4475Tests {
    static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Interop/rfc4475")

    /// §3.1.2 (invalid syntax) and the §3.3 messages a parser must refuse (insuf, multi01,
    /// mcl01): 400, or 505 for a version that is not 2.0; a response with a bad code is dropped.
    static let refused = [
        "badinv01", "clerr", "ncl", "scalar02", "scalarlg", "quotbal", "ltgtruri", "lwsruri", "lwsstart", "trws",
        "escruri", "baddate", "regbadct", "badaspec", "baddn", "badvers", "mismatch01", "mismatch02", "bigcode",
        "insuf", "multi01", "mcl01",
    ]

    /// §3.1.1 (valid), §3.2, the rest of §3.3 (valid syntax; the application decides) and §3.4.
    static let accepted = [
        "wsinv", "intmeth", "esc01", "escnull", "esc02", "lwsdisp", "longreq", "dblreq", "semiuri", "transports",
        "mpart01", "unreason", "noreason", "badbranch", "unkscm", "novelsc", "unksm2", "bext01", "invut", "regaut01",
        "bcast", "zeromf", "cparam01", "cparam02", "regescrt", "sdp01", "inv2543",
    ]

    static func verdict(_ name: String) throws -> SIPParseError? {
        let bytes = Array(try Data(contentsOf: directory.appendingPathComponent(name + ".dat")))
        do {
            if case .request(let request) = try SIPParser().parse(bytes, framing: .message) {
                try request.checkSyntax()
            }
            return nil
        } catch {
            return error
        }
    }

    @Test func everyFileIsJudged() throws {
        let files = try FileManager.default.contentsOfDirectory(atPath: Self.directory.path)
            .filter { $0.hasSuffix(".dat") }.map { String($0.dropLast(4)) }
        #expect(Set(files) == Set(Self.refused + Self.accepted))
        #expect(files.count == 49)
    }

    @Test(arguments: refused) func invalidMessagesAreRefused(_ name: String) throws {
        let error = try Self.verdict(name)
        #expect(error != nil, "\(name) was accepted")
        if name == "badvers" { #expect(error?.kind == .unsupportedVersion) }
        if name == "lwsruri" || name == "trws" { #expect(error?.kind == .malformedStartLine) }  // 400, not 505
    }

    @Test(arguments: accepted) func validMessagesAreAccepted(_ name: String) throws {
        let error = try Self.verdict(name)
        #expect(error == nil, "\(name): \(error?.reasonPhrase ?? "")")
    }
}
