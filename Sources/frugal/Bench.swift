import ArgumentParser
import Foundation
import FrugalCore
import FrugalNN
import FrugalModels

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Benchmarks that print a table and write JSON.",
        subcommands: [GEMMBenchCommand.self, TrainBench.self, LoRABench.self])
}

struct GEMMBenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gemm",
        abstract: "SGEMM/GEMV GFLOP/s per backend (Swift kernels; OpenBLAS when FRUGAL_BLAS-loadable).",
        discussion: "Shapes are MxKxN: C[M,N] = A[M,K]·B[K,N]. 1x4096x14336 runs the batch-1 GEMV with W stored [N, K].")

    @Option(help: "Comma-separated MxKxN shapes.")
    var shapes = "128x128x128,256x256x256,512x512x512,1024x1024x1024,2048x2048x2048,256x512x512,64x512x2048,1x4096x14336"
    @Option(help: "Backends: swift, openblas (skipped when libopenblas is absent).")
    var backends = "swift,openblas"
    @Option(help: "Seconds of timing per shape and backend (median of repeats).")
    var minTime = 0.5
    @Option(help: "Write results as JSON to this file.")
    var json: String?

    func run() throws {
        let parsed = try shapes.split(separator: ",").map { s -> (m: Int, k: Int, n: Int) in
            let d = s.split(separator: "x").compactMap { Int($0) }
            guard d.count == 3, d.allSatisfy({ $0 > 0 }) else { throw CLIError("bad shape '\(s)': expected MxKxN, e.g. 512x512x512") }
            return (d[0], d[1], d[2])
        }
        var bs: [Backend] = []
        for b in backends.split(separator: ",") {
            guard let be = Backend(rawValue: String(b)) else { throw CLIError("unknown backend '\(b)': use swift or openblas") }
            if be == .openblas && !OpenBLAS.isAvailable {
                FileHandle.standardError.write("note: libopenblas not found, skipping the openblas backend\n".data(using: .utf8)!)
                continue
            }
            bs.append(be)
        }
        print("threads: \(Kernels.threads)")
        let results = GEMMBench.run(shapes: parsed, backends: bs, minTime: minTime)
        printTable(["m", "k", "n", "backend", "GFLOP/s", "ms"], results.map {
            ["\($0.m)", "\($0.k)", "\($0.n)", $0.backend, fmt($0.gflops), fmt($0.seconds * 1e3, 3)]
        })
        if let json {
            struct Out: Encodable { let threads: Int; let results: [GEMMBench.Result] }
            try writeJSON(Out(threads: Kernels.threads, results: results), to: json)
        }
    }
}

struct TrainBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train",
        abstract: "Training throughput of the LeNet-style CNN on MNIST-shaped batches (images/s).",
        discussion: "Model: conv 5x5 32, pool, conv 5x5 64, pool, fc 512, fc 10; SGD momentum 0.9. Anchor: bench/lenet_torch.py.")

    @Option(help: "Batch size.") var batch = 64
    @Option(help: "Timed steps.") var steps = 30
    @Option(help: "Untimed warm-up steps.") var warmup = 5
    @Option(help: "Write results as JSON to this file.") var json: String?

    func run() throws {
        var rng = RNG(seed: 0)
        let model = LeNet(rng: &rng)
        let opt = SGD(model.parameters(), lr: 0.01, momentum: 0.9)
        let x = Tensor.uniform([batch, 1, 28, 28], 0, 1, rng: &rng)
        let y = (0..<batch).map { _ in rng.int(10) }
        var times: [Double] = []
        MemoryStats.resetPeak()
        for i in 0..<(warmup + steps) {
            let t0 = now()
            opt.zeroGrad()
            let loss = Loss.crossEntropy(model(x), y)
            loss.backward()
            opt.step()
            if i >= warmup { times.append(now() - t0) }
        }
        times.sort()
        let med = times[times.count / 2]
        let ips = Double(batch) / med
        printTable(["model", "batch", "threads", "ms/step (median)", "images/s", "peak tensor MB"],
                   [["lenet", "\(batch)", "\(Kernels.threads)", fmt(med * 1e3), fmt(ips, 0), fmt(Double(MemoryStats.peak) / 1e6)]])
        if let json {
            struct Out: Encodable { let model: String; let batch: Int; let threads: Int; let step_ms_median: Double; let images_per_second: Double; let step_ms_all: [Double] }
            try writeJSON(Out(model: "lenet", batch: batch, threads: Kernels.threads, step_ms_median: med * 1e3, images_per_second: ips, step_ms_all: times.map { $0 * 1e3 }), to: json)
        }
    }
}
