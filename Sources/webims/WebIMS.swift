import ArgumentParser

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
}
