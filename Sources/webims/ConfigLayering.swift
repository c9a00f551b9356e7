import ArgumentParser
import Foundation

/// Settings for `serve` from three places, most specific first: the command line, then
/// `WEBIMS_*` environment variables (`--wss-port` ↔ `WEBIMS_WSS_PORT`), then a config file
/// (`--config FILE` or `WEBIMS_CONFIG`: `name = value` lines, `#` comments, a repeatable
/// option repeated). The option names come from `serve`'s own definitions, so the layers
/// cannot drift from them; an unknown name is refused like an unknown option.
enum ConfigLayering {
    struct OptionInfo {
        var takesValue: Bool
    }

    /// `serve`'s options and flags, read from its own help text.
    static func options(of command: any ParsableCommand.Type) -> [String: OptionInfo] {
        var result: [String: OptionInfo] = [:]
        for line in command.helpMessage(columns: 400).split(separator: "\n") {
            let trimmed = line.drop(while: { $0 == " " })
            guard trimmed.hasPrefix("--") else { continue }
            let words = trimmed.split(separator: " ", maxSplits: 2)
            let name = String(words[0].dropFirst(2)).split(separator: ",").first.map(String.init) ?? ""
            guard !name.isEmpty, name != "help", name != "config" else { continue }
            result[name] = OptionInfo(takesValue: words.count > 1 && words[1].hasPrefix("<"))
        }
        return result
    }

    /// The arguments `serve` parses: the command line's, plus what the environment and the
    /// config file set for options the command line leaves out.
    static func layered(
        _ arguments: [String], command: any ParsableCommand.Type,
        environment: [String: String] = ProcessInfo.processInfo.environment
    ) throws -> [String] {
        let known = options(of: command)
        var args = arguments
        var configPath = environment["WEBIMS_CONFIG"]
        if let index = args.firstIndex(of: "--config") {
            guard index + 1 < args.count else { throw ValidationError("--config needs a file") }
            configPath = args[index + 1]
            args.removeSubrange(index...(index + 1))
        }
        let given = Set(args.filter { $0.hasPrefix("--") }.map { String($0.dropFirst(2).split(separator: "=")[0]) })
        var fromEnvironment: [String: [String]] = [:]
        for (name, info) in known {
            let variable = "WEBIMS_" + name.uppercased().replacingOccurrences(of: "-", with: "_")
            guard let value = environment[variable] else { continue }
            // A repeatable option takes several values separated by commas or spaces.
            fromEnvironment[name] =
                info.takesValue
                ? value.split(whereSeparator: { $0 == "," || $0 == " " }).map(String.init) : [value]
        }
        var fromFile: [String: [String]] = [:]
        if let configPath {
            guard let text = try? String(contentsOfFile: configPath, encoding: .utf8) else {
                throw ValidationError("cannot read config file \(configPath)")
            }
            for (number, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
                let line = raw.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
                guard !line.trimmingCharacters(in: .whitespaces).isEmpty else { continue }
                let parts = line.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
                guard parts.count == 2, known[parts[0]] != nil else {
                    throw ValidationError("\(configPath):\(number + 1): not a serve option: \(line)")
                }
                var value = parts[1]
                if value.count >= 2, value.hasPrefix("\""), value.hasSuffix("\"") {
                    value = String(value.dropFirst().dropLast())
                }
                fromFile[parts[0], default: []].append(value)
            }
        }
        for (name, info) in known.sorted(by: { $0.key < $1.key }) where !given.contains(name) {
            guard let values = fromEnvironment[name] ?? fromFile[name] else { continue }
            for value in values {
                if info.takesValue {
                    // One word, `--name=value`: a value that starts with `-` is not read as a flag.
                    args.append("--\(name)=\(value)")
                } else if ["1", "true", "yes", "on"].contains(value.lowercased()) {
                    args.append("--\(name)")
                }
            }
        }
        return args
    }
}
