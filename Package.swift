// swift-tools-version: 6.1
import PackageDescription

// Kernels need AVX2+FMA code generation and optimisation even in debug builds
// (`swift test`): without `-target-cpu haswell`, SIMD8 FMAs become scalar calls (~100x slower).
#if arch(x86_64)
let fast: [SwiftSetting] = [.unsafeFlags(["-O", "-target-cpu", "haswell"])]
#else
let fast: [SwiftSetting] = [.unsafeFlags(["-O"])]
#endif
let libm: [LinkerSetting] = [.linkedLibrary("m", .when(platforms: [.linux]))]

let package = Package(
    name: "Frugal",
    products: [
        .executable(name: "frugal", targets: ["frugal"]),
        .library(name: "FrugalCore", targets: ["FrugalCore"]),
        .library(name: "FrugalNN", targets: ["FrugalNN"]),
        .library(name: "FrugalData", targets: ["FrugalData"]),
        .library(name: "FrugalModels", targets: ["FrugalModels"]),
        .library(name: "FrugalMoE", targets: ["FrugalMoE"]),
        .library(name: "FrugalNAS", targets: ["FrugalNAS"]),
        .library(name: "FrugalPEFT", targets: ["FrugalPEFT"]),
        .library(name: "FrugalFederatedRPC", targets: ["FrugalFederatedRPC"]),
        .library(name: "FrugalFlower", targets: ["FrugalFlower"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        // gRPC deployment and the Flower device (FrugalFederatedRPC and FrugalFlower only).
        .package(url: "https://github.com/grpc/grpc-swift-2", from: "2.4.3"),
        .package(url: "https://github.com/grpc/grpc-swift-nio-transport", from: "2.9.2"),
        .package(url: "https://github.com/grpc/grpc-swift-protobuf", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-protobuf", from: "1.39.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
    ],
    targets: [
        // Tensors, storage and dtypes, autograd tape, kernels, RNG, memory accounting.
        .target(name: "FrugalCore", swiftSettings: fast, linkerSettings: libm),
        // Modules, layers, losses, optimisers, LoRA, model formats (safetensors, GGUF).
        .target(name: "FrugalNN", dependencies: ["FrugalCore"], swiftSettings: fast, linkerSettings: libm),
        // Data sets, loaders, augmentation, long-tail, federated partitions, tokenizers.
        .target(name: "FrugalData", dependencies: ["FrugalCore"], swiftSettings: fast, linkerSettings: libm),
        // Models built from the layers (LeNet, MLP, ...) and training/evaluation loops.
        .target(name: "FrugalModels", dependencies: ["FrugalNN", "FrugalData"], swiftSettings: fast),
        // Federated runtime: devices, rounds, clock, strategies; wire codecs; Caesar.
        .target(name: "FrugalFederated", dependencies: ["FrugalNN", "FrugalData", "FrugalModels"], swiftSettings: fast, linkerSettings: libm),
        // MoEpic: expert split, offload store, tiers, cache policies, predictor, offloading executor, planner,
        // simulator, routing traces.
        .target(name: "FrugalMoE", dependencies: ["FrugalCore", "FrugalNN", "FrugalModels"], swiftSettings: fast, linkerSettings: libm),
        // SSF-NAS: DARTS/FairDARTS search, Barlow Twins, genotypes, retraining and evaluation.
        .target(name: "FrugalNAS", dependencies: ["FrugalCore", "FrugalNN", "FrugalData", "FrugalModels"], swiftSettings: fast, linkerSettings: libm),
        // DropPEFT: stochastic layer dropout, LoRA fine-tuning of pretrained transformers.
        .target(name: "FrugalPEFT", dependencies: ["FrugalCore", "FrugalNN", "FrugalData", "FrugalModels", "FrugalFederated"], swiftSettings: fast, linkerSettings: libm),
        // Federated learning across processes and hosts: gRPC coordinator and device, TLS, enrolment
        // tokens, journal, metrics. The only target with the gRPC/NIO/protobuf dependencies.
        .target(
            name: "FrugalFederatedRPC",
            dependencies: [
                "FrugalCore", "FrugalNN", "FrugalData", "FrugalModels", "FrugalFederated",
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCNIOTransportHTTP2", package: "grpc-swift-nio-transport"),
                .product(name: "GRPCProtobuf", package: "grpc-swift-protobuf"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            exclude: ["Protos"],
            swiftSettings: fast),
        // A Frugal device for Flower federations: the Fleet API of Flower 1.42 (protobuf over HTTP, or
        // gRPC), signed SuperNode metadata, Flower's message/object model (records, NPY arrays, chunks).
        .target(
            name: "FrugalFlower",
            dependencies: [
                "FrugalNN", "FrugalData", "FrugalModels", "FrugalFederated",
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCNIOTransportHTTP2", package: "grpc-swift-nio-transport"),
                .product(name: "GRPCProtobuf", package: "grpc-swift-protobuf"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: fast),
        .executableTarget(
            name: "frugal",
            dependencies: [
                "FrugalCore", "FrugalNN", "FrugalData", "FrugalModels", "FrugalFederated", "FrugalMoE", "FrugalNAS", "FrugalPEFT",
                "FrugalFederatedRPC", "FrugalFlower",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: fast),
        .testTarget(name: "FrugalCoreTests", dependencies: ["FrugalCore"], swiftSettings: fast),
        .testTarget(name: "FrugalNNTests", dependencies: ["FrugalNN"], resources: [.copy("Fixtures")], swiftSettings: fast),
        .testTarget(name: "FrugalFederatedTests", dependencies: ["FrugalFederated"], swiftSettings: fast),
        .testTarget(name: "FrugalFederatedRPCTests", dependencies: ["FrugalFederatedRPC", "FrugalFederated", "FrugalPEFT"], resources: [.copy("Fixtures")], swiftSettings: fast),
        .testTarget(name: "FrugalModelsTests", dependencies: ["FrugalModels"], resources: [.copy("Fixtures")], swiftSettings: fast),
        .testTarget(name: "FrugalMoETests", dependencies: ["FrugalMoE"], resources: [.copy("Fixtures")], swiftSettings: fast),
        .testTarget(name: "FrugalNASTests", dependencies: ["FrugalNAS"], swiftSettings: fast),
        .testTarget(name: "FrugalPEFTTests", dependencies: ["FrugalPEFT"], swiftSettings: fast),
        .testTarget(name: "FrugalFlowerTests", dependencies: ["FrugalFlower"], resources: [.copy("Fixtures")], swiftSettings: fast),
        .testTarget(name: "FrugalDataTests", dependencies: ["FrugalData", "FrugalNN"], resources: [.copy("Fixtures")], swiftSettings: fast),
    ],
    swiftLanguageModes: [.v6]
)
