import ArgumentParser
import FrugalFlower

extension FL {
    /// `fl join`: one device command for both kinds of federation: a Frugal server (`--server`,
    /// `fl serve`, gRPC) or a Flower SuperLink (`--flower`, Flower's Fleet API).
    struct Join: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Take part in a federation as a device: a Frugal server (--server) or a Flower \(FlowerProtocol.version) SuperLink (--flower).",
            discussion: FrugalJoinOptions.discussion + "\n\n" + FlowerJoinOptions.discussion)

        @OptionGroup(title: "Frugal federation server (--server)") var frugal: FrugalJoinOptions
        @OptionGroup(title: "Flower SuperLink (--flower)") var flowerOptions: FlowerJoinOptions
        @Option(help: "Data directory (default $FRUGAL_DATA or ~/.cache/frugal-data).") var data: String?

        func validate() throws {
            switch (frugal.server, flowerOptions.flower) {
            case (nil, nil): throw ValidationError("give --server HOST:PORT (a Frugal server) or --flower HOST:PORT (a Flower SuperLink)")
            case (.some, .some): throw ValidationError("--server and --flower exclude each other")
            default: break
            }
        }

        func run() throws {
            if frugal.server != nil { try frugal.run(data: data) } else { try flowerOptions.run(data: data) }
        }
    }
}
