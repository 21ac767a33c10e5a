import ArgumentParser
import Dispatch
import Foundation
import FrugalCore
import FrugalNN
import FrugalData
import FrugalModels
import FrugalFederated
import FrugalFlower

extension FL {
    /// `frugal fl join --flower HOST:PORT`: a Frugal device in a Flower federation.
    struct FlowerJoinOptions: ParsableArguments {
        static let discussion = """
            --flower: the device speaks the Fleet API of Flower \(FlowerProtocol.version) itself (no Python): it registers and \
            activates with the SuperLink (signed metadata, a fresh P-384 key or --key), sends heartbeats, pulls \
            messages and their objects, trains or evaluates its model with Frugal on its own data, and pushes the \
            replies. A train message must carry one ArrayRecord with the model's parameters (float32, the model's \
            names and shapes: see --print-layout) and may carry a ConfigRecord (lr, local-steps or local-epochs, \
            batch-size, momentum, weight-decay); the reply holds "arrays" and "metrics" (train_loss, num-examples). \
            Other message types are answered with an error message.

            Transports: http (default) is Flower \(FlowerProtocol.version)'s Fleet API, served on the SuperLink's \
            --port (plain HTTP: start it with --insecure); grpc is the legacy gRPC Fleet API on 9092, which a \
            \(FlowerProtocol.version) SuperLink serves only when started with FLWR_INTERNAL_GRPC_FLEET_API=1 \
            (TLS with --root-certificates).

            Example (scripts/flower_integration.sh runs it against a real SuperLink and FedAvg ServerApp):
              frugal fl join --flower 127.0.0.1:9093 --model mlp --partition 0/2 --runs 1
            """
        @Option(name: .customLong("flower"), help: "A Flower SuperLink's Fleet API address, HOST:PORT.") var flower: String?
        @Option(help: "http (Flower \(FlowerProtocol.version)'s Fleet API) or grpc (its legacy gRPC Fleet API).") var transport = "http"
        @Option(name: .customLong("root-certificates"), help: "PEM CA certificates for a TLS SuperLink (grpc transport).") var rootCertificates: String?
        @Option(help: "Private key of a SuperNode registered with `flwr supernode register` (PEM or OpenSSH); without it the device registers a fresh key itself.") var key: String?
        @Option(help: "auto (mnist when present, else generated), mnist, fmnist or synthetic (generated 28x28 strokes).") var dataset = "auto"
        @Option(help: "lenet or mlp (one hidden layer of 64).") var model = "lenet"
        @Option(help: "This device's share of the training set: K/N is the K-th of N IID parts (0-based).") var partition = "0/1"
        @Option(name: .customLong("limit-train"), help: "Use at most N training images (after partitioning).") var limitTrain: Int?
        @Option(name: .customLong("limit-test"), help: "Evaluate on at most N test images.") var limitTest: Int?
        @Option(help: "Learning rate when the message does not set lr.") var lr: Float = 0.05
        @Option(name: .customLong("local-steps"), help: "Local SGD steps when the message sets neither local-steps nor local-epochs (default: one epoch).") var localSteps: Int?
        @Option(help: "Batch size when the message does not set batch-size.") var batch = 32
        @Option(help: "SGD momentum when the message does not set momentum.") var momentum: Float = 0
        @Option(help: "Seed of the model's initialisation (replaced by the server's arrays), the partition and the data order.") var seed: UInt64 = 1
        @Option(help: "Leave after N runs this device took part in have finished (default: stay until interrupted).") var runs: Int?
        @Option(name: .customLong("poll-interval"), help: "Seconds between asking for messages when none is waiting.") var pollInterval = 3.0
        @Option(name: .customLong("heartbeat-interval"), help: "Heartbeat interval announced to the SuperLink, seconds (10 to 1800; a heartbeat goes every 0.8 of it).") var heartbeatInterval = FlowerProtocol.heartbeatInterval
        @Option(name: .customLong("chunk-size"), help: "Largest array chunk of replies, bytes.") var chunkSize = FlowerProtocol.defaultChunkSize
        @Option(help: "Write what each train message received and sent (NPY per array, metrics) under this directory.") var dump: String?
        @Option(help: "Write a summary of the messages handled as JSON to this file.") var json: String?
        @Flag(name: .customLong("allow-version-mismatch"), help: "Join a SuperLink that reports another Flower major.minor.") var allowVersionMismatch = false
        @Flag(name: .customLong("print-layout"), help: "Print the model's parameter names and shapes as JSON and exit.") var printLayout = false

        func validate() throws {
            guard flower != nil else { return }   // the Frugal-server mode of `fl join`
            guard FleetTransportKind(rawValue: transport) != nil else { throw ValidationError("--transport must be http or grpc") }
            guard lr > 0, batch > 0, pollInterval > 0, chunkSize > 0 else { throw ValidationError("--lr, --batch, --poll-interval and --chunk-size must be positive") }
            if let s = localSteps, s < 1 { throw ValidationError("--local-steps must be ≥ 1") }
            if let r = runs, r < 1 { throw ValidationError("--runs must be ≥ 1") }
            guard (10...1800).contains(heartbeatInterval) else { throw ValidationError("--heartbeat-interval must be between 10 and 1800 seconds (the SuperLink's bounds)") }
            _ = try parsePartition()
            _ = try parseAddress()
        }

        func parseAddress() throws -> (String, Int) {
            let flower = self.flower ?? ""
            var host = Substring(flower), portText = Substring("")
            if flower.hasPrefix("[") {  // [IPv6]:port
                guard let close = flower.firstIndex(of: "]") else { throw ValidationError("--flower '\(flower)': missing ']'") }
                host = flower[flower.index(after: flower.startIndex)..<close]
                portText = flower[flower.index(after: close)...].drop(while: { $0 == ":" })
            } else if let colon = flower.lastIndex(of: ":") {
                host = flower[..<colon]; portText = flower[flower.index(after: colon)...]
            }
            guard !host.isEmpty, let port = Int(portText), (1...65535).contains(port) else {
                throw ValidationError("--flower '\(flower)' must be HOST:PORT (e.g. 127.0.0.1:9093)")
            }
            return (String(host), port)
        }

        func parsePartition() throws -> (Int, Int) {
            let parts = partition.split(separator: "/").compactMap { Int($0) }
            guard parts.count == 2, parts[1] >= 1, (0..<parts[1]).contains(parts[0]) else {
                throw ValidationError("--partition '\(partition)' must be K/N with 0 ≤ K < N")
            }
            return (parts[0], parts[1])
        }

        func loadData(_ data: String?) throws -> (ImageDataset, ImageDataset, Normalization, String) {
            let root = data ?? DataPaths.root
            let mnistPresent = FileManager.default.fileExists(atPath: root + "/mnist/train-images-idx3-ubyte")
                || FileManager.default.fileExists(atPath: root + "/mnist/train-images-idx3-ubyte.gz")
            switch dataset == "auto" ? (mnistPresent ? "mnist" : "synthetic") : dataset {
            case "mnist":
                return (try MNIST.load(dir: root + "/mnist", train: true), try MNIST.load(dir: root + "/mnist", train: false), MNIST.normalization, "MNIST")
            case "fmnist", "fashion-mnist":
                return (try FashionMNIST.load(dir: root + "/fashion-mnist", train: true), try FashionMNIST.load(dir: root + "/fashion-mnist", train: false),
                        FashionMNIST.normalization, "Fashion-MNIST")
            case "synthetic":
                return (try SyntheticImages.strokes(count: 6000, seed: 1), try SyntheticImages.strokes(count: 1000, seed: 2),
                        Normalization(mean: [0.5], std: [0.5]), "generated strokes")
            case let d:
                throw CLIError("unknown data set '\(d)': use auto, mnist, fmnist or synthetic")
            }
        }

        func makeModel(_ train: ImageDataset) throws -> any Layer {
            var rng = RNG(seed: seed)
            switch model {
            case "lenet": return LeNet(inChannels: train.channels, classes: train.classes, imageSize: train.height, rng: &rng)
            case "mlp": return ImageMLP([train.channels * train.height * train.width, 64, train.classes], rng: &rng)
            case let m: throw CLIError("unknown model '\(m)': use lenet or mlp")
            }
        }

        func run(data: String?) throws {
            var (train, test, norm, dataName) = try loadData(data)
            let net = try makeModel(train)
            if printLayout {
                let layout: [[String: Any]] = ModelMapping.layout(of: net).map { ["name": $0.name, "shape": $0.shape] }
                let data = try JSONSerialization.data(withJSONObject: layout, options: [.prettyPrinted])
                print(String(decoding: data, as: UTF8.self))
                return
            }
            let (k, n) = try parsePartition()
            if n > 1 {
                let part = try FederatedPartition.iid(count: train.count, clients: n, seed: seed)
                train = try train.subset(part.clients[k])
            }
            if let l = limitTrain, l < train.count { train = try train.subset(Array(0..<max(l, 1))) }
            if let l = limitTest, l < test.count { test = try test.subset(Array(0..<max(l, 1))) }
            var defaults = LocalTrainingConfig()
            defaults.learningRate = lr; defaults.batchSize = batch; defaults.momentum = momentum
            defaults.steps = localSteps; defaults.epochs = 1; defaults.seed = seed &+ UInt64(k) &* 7919
            let app = ImageClassifierApp(model: net, train: train, test: test, normalization: norm, defaults: defaults)

            let identity: NodeIdentity
            if let key {
                guard let text = try? String(contentsOfFile: key, encoding: .utf8) else { throw CLIError("--key \(key): cannot read the file") }
                identity = try NodeIdentity(privateKeyText: text, source: key)
            } else {
                identity = NodeIdentity.generate()
            }
            let (host, port) = try parseAddress()
            let fleetTransport: FleetTransport
            switch FleetTransportKind(rawValue: transport)! {
            case .http:
                if rootCertificates != nil { throw CLIError("--root-certificates needs --transport grpc (the HTTP transport is plain HTTP)") }
                fleetTransport = HTTPFleetTransport(host: host, port: port, identity: identity)
            case .grpc:
                fleetTransport = try GRPCFleetTransport(host: host, port: port, identity: identity, rootCertificates: rootCertificates)
            }
            defer { fleetTransport.close() }
            let fleet = FleetClient(transport: fleetTransport, identity: identity, selfRegister: key == nil)
            fleet.chunkSize = chunkSize
            var options = FlowerDeviceOptions()
            options.pollInterval = pollInterval
            options.heartbeatInterval = heartbeatInterval
            options.runs = runs
            options.allowVersionMismatch = allowVersionMismatch
            let device = FlowerDevice(fleet: fleet, app: app, options: options)
            print("[flower] Frugal device: \(model) (\(ModelMapping.layout(of: net).count) parameter tensors) on \(dataName), partition \(k)/\(n): \(train.count) training and \(test.count) test images; Fleet API \(transport) at \(host):\(port), Flower \(FlowerProtocol.version)")
            flushStdout()
            if let dump { try FileManager.default.createDirectory(atPath: dump, withIntermediateDirectories: true) }
            device.onMessage = { [dump] message, reply, handled in
                guard let dump, handled.error == nil, message.metadata.messageType.hasPrefix("train"), let t = app.lastTrain else { return }
                try FlowerJoinOptions.write(dump: dump, node: fleet.nodeID ?? 0, message: message, train: t, handled: handled)
            }
            // SIGINT / SIGTERM: finish the current message, then leave the federation.
            var sources: [DispatchSourceSignal] = []
            for sig in [SIGINT, SIGTERM] {
                signal(sig, SIG_IGN)
                let s = DispatchSource.makeSignalSource(signal: sig, queue: .global())
                s.setEventHandler { device.stop() }
                s.resume()
                sources.append(s)
            }
            defer { sources.forEach { $0.cancel() } }
            let summary = try device.run()
            let failed = summary.messages.filter { $0.error != nil }.count
            print("[flower] handled \(summary.messages.count) messages (\(failed) answered with errors), runs finished: \(summary.runsFinished.count)")
            // Messages answered with an error reply were handled (the ServerApp has the reason): exit 0.
            if let json { try writeJSON(summary, to: json) }
        }

        /// DIR/node<id>-run<run>-<group>/{received,sent}/<array>.npy and reply.json.
        static func write(dump: String, node: UInt64, message: FlowerMessage,
                          train: (received: ArrayRecord, sent: ArrayRecord, metrics: MetricRecord, config: LocalTrainingConfig),
                          handled: HandledMessage) throws {
            let md = message.metadata
            let dir = "\(dump)/node\(node)-run\(md.runID)-\(message.round ?? 0)"
            var names: [String: String] = [:]
            for (sub, record) in [("received", train.received), ("sent", train.sent)] {
                try FileManager.default.createDirectory(atPath: "\(dir)/\(sub)", withIntermediateDirectories: true)
                for (i, (name, a)) in record.items.enumerated() {
                    let file = "\(i)-" + name.map { $0.isLetter || $0.isNumber || $0 == "." || $0 == "_" || $0 == "-" ? String($0) : "_" }.joined() + ".npy"
                    names[name] = file
                    try Data(a.data).write(to: URL(fileURLWithPath: "\(dir)/\(sub)/\(file)"))
                }
            }
            var metrics: [String: Double] = [:]
            for (k, v) in train.metrics.values.items { if let d = v.number { metrics[k] = d } }
            let info = DumpInfo(node: node, run: md.runID, round: message.round ?? 0, messageID: md.messageID, metrics: metrics,
                                arrays: train.sent.keys.map { [$0, names[$0]!] }, learningRate: Double(train.config.learningRate),
                                steps: train.config.steps, batchSize: train.config.batchSize, seconds: handled.seconds)
            try writeJSON(info, to: "\(dir)/reply.json")
        }

        struct DumpInfo: Encodable {
            var node: UInt64, run: UInt64, round: Int, messageID: String
            var metrics: [String: Double]
            /// [array name, file name] in record order.
            var arrays: [[String]]
            var learningRate: Double, steps: Int?, batchSize: Int, seconds: Double
        }
    }
}
