import ArgumentParser
import Foundation

@main
struct WebIMS: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "webims",
        abstract: "WebRTC access to IMS: WWSF, WAF, eP-CSCF, S-CSCF and HSS in one program.",
        discussion: """
            A browser logs in at the WWSF, gets a token from the WAF, opens a secure WebSocket \
            to the eP-CSCF and registers its IMS identity at the S-CSCF (3GPP TS 23.228 Annex U, \
            TS 24.371).
            """,
        version: "0.1.0",
        subcommands: [
            Serve.self, SubscriberCommand.self, AccountCommand.self, TokenCommand.self, WAFCommand.self,
            RegistrationsCommand.self, BenchCommand.self,
        ]
    )

    /// `serve` also reads WEBIMS_* variables and a config file (ConfigLayering).
    static func main() async {
        var arguments = Array(CommandLine.arguments.dropFirst())
        if arguments.first == "serve" {
            do {
                arguments = ["serve"] + (try ConfigLayering.layered(Array(arguments.dropFirst()), command: Serve.self))
            } catch {
                exit(withError: error)
            }
        }
        await main(arguments)
    }
}
