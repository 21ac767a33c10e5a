import Foundation

/// An assignment of sample indices to federated clients.
public struct ClientPartition: Sendable, Codable, Equatable {
    /// How the split was made, e.g. `dirichlet(alpha=0.5)`.
    public var method: String
    public var seed: UInt64
    /// `clients[k]` = data set indices held by client `k` (disjoint).
    public var clients: [[Int]]

    public init(method: String, seed: UInt64, clients: [[Int]]) {
        self.method = method
        self.seed = seed
        self.clients = clients
    }

    /// Samples per client.
    public var sizes: [Int] { clients.map(\.count) }

    /// Per-client sample counts and label histograms.
    public func summary(labels: [Int32], classes: Int) -> PartitionSummary {
        let rows = clients.enumerated().map { k, idx -> PartitionSummary.Client in
            var h = [Int](repeating: 0, count: classes)
            for i in idx where i >= 0 && i < labels.count {
                let l = Int(labels[i])
                if l >= 0 && l < classes { h[l] += 1 }
            }
            return PartitionSummary.Client(client: k, samples: idx.count, histogram: h)
        }
        return PartitionSummary(method: method, seed: seed, classes: classes, clients: rows)
    }

    /// Summary against an image data set's labels.
    public func summary(_ dataset: ImageDataset) -> PartitionSummary {
        summary(labels: dataset.labels, classes: dataset.classes)
    }

    /// One data set per client.
    public func datasets(_ dataset: ImageDataset) throws -> [ImageDataset] {
        try clients.map { try dataset.subset($0) }
    }
}

/// Per-client sizes and label histograms; prints as a table and encodes to JSON.
public struct PartitionSummary: Sendable, Codable, Equatable, CustomStringConvertible {
    public struct Client: Sendable, Codable, Equatable {
        public var client: Int
        public var samples: Int
        /// Samples of each class.
        public var histogram: [Int]
        /// Number of classes with at least one sample.
        public var distinctClasses: Int { histogram.filter { $0 > 0 }.count }
    }
    public var method: String
    public var seed: UInt64
    public var classes: Int
    public var clients: [Client]

    public var totalSamples: Int { clients.reduce(0) { $0 + $1.samples } }

    /// The table: one row per client with its sample count and label histogram
    /// (for more than 20 classes: the number of classes present and the three largest).
    public var description: String {
        var lines = ["partition \(method), seed \(seed): \(clients.count) clients, \(totalSamples) samples, \(classes) classes"]
        if classes <= 20 {
            let widths = (0..<classes).map { c in max(3, String(clients.map { $0.histogram[c] }.max() ?? 0).count) }
            lines.append(
                "client  samples  " + (0..<classes).map { padLeft("c\($0)", widths[$0]) }.joined(separator: " "))
            for r in clients {
                lines.append(
                    padLeft(String(r.client), 6) + "  " + padLeft(String(r.samples), 7) + "  "
                        + (0..<classes).map { padLeft(String(r.histogram[$0]), widths[$0]) }.joined(separator: " "))
            }
        } else {
            lines.append("client  samples  classes  largest classes (class:count)")
            for r in clients {
                let top = r.histogram.enumerated().sorted { $0.element > $1.element || ($0.element == $1.element && $0.offset < $1.offset) }
                    .prefix(3).filter { $0.element > 0 }.map { "\($0.offset):\($0.element)" }.joined(separator: " ")
                lines.append(padLeft(String(r.client), 6) + "  " + padLeft(String(r.samples), 7) + "  " + padLeft(String(r.distinctClasses), 7) + "  " + top)
            }
        }
        let sizes = clients.map(\.samples)
        if let lo = sizes.min(), let hi = sizes.max() {
            lines.append("samples per client: min \(lo), max \(hi), mean \(formatFixed(Double(totalSamples) / Double(max(1, sizes.count)), 1))")
        }
        return lines.joined(separator: "\n")
    }

    /// Pretty-printed JSON (sorted keys).
    public func json() throws -> String {
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys]
        return String(decoding: try enc.encode(self), as: UTF8.self)
    }
}

/// Client size distributions for ``FederatedPartition/quantitySkew(count:clients:distribution:seed:)``.
public enum QuantityDistribution: Sendable, Equatable {
    /// Sizes proportional to `exp(sigma * z)`, `z ~ N(0, 1)` (log-normal).
    case logNormal(sigma: Double)
    /// Sizes proportional to `rank^(-exponent)` for ranks 1...K, ranks assigned to clients at random.
    case powerLaw(exponent: Double)
}

/// Federated splits of a labelled data set: IID, Dirichlet label skew, k classes per client,
/// McMahan-style shards, and quantity skew. All are seeded and reproducible, give every client at
/// least one sample, and throw ``DataError/invalidArgument(_:)`` for impossible requests.
///
/// ```swift
/// let p = try FederatedPartition.dirichlet(labels: train.labels, classes: 10, clients: 100, alpha: 0.5, seed: 1)
/// print(p.summary(train))                     // table: client, samples, label histogram
/// let shards = try p.datasets(train)          // one ImageDataset per client
/// ```
public enum FederatedPartition {
    static func checkClients(_ clients: Int, samples: Int) throws {
        guard clients >= 1 else { throw DataError.invalidArgument("need at least one client, got \(clients)") }
        guard samples >= clients else {
            throw DataError.invalidArgument(
                "cannot give each of \(clients) clients a sample: the data set has only \(samples) samples")
        }
    }

    static func checkLabels(_ labels: [Int32], classes: Int) throws {
        guard classes >= 1 else { throw DataError.invalidArgument("need at least one class, got \(classes)") }
        if let bad = labels.firstIndex(where: { $0 < 0 || Int($0) >= classes }) {
            throw DataError.invalidArgument("label \(labels[bad]) of sample \(bad) is outside 0..<\(classes)")
        }
    }

    /// Splits `items` into `parts` contiguous pieces whose sizes differ by at most one (numpy `array_split`).
    static func split<T>(_ items: [T], _ parts: Int) -> [[T]] {
        let n = items.count
        return (0..<parts).map { p in
            let lo = p * (n / parts) + Swift.min(p, n % parts)
            let hi = lo + n / parts + (p < n % parts ? 1 : 0)
            return Array(items[lo..<hi])
        }
    }

    /// Moves one sample from the largest client into each empty client (deterministic).
    static func fillEmpty(_ clients: inout [[Int]]) {
        for k in clients.indices where clients[k].isEmpty {
            guard let donor = clients.indices.max(by: { clients[$0].count < clients[$1].count }),
                clients[donor].count > 1
            else { return }
            clients[k].append(clients[donor].removeLast())
        }
    }

    static func sorted(_ clients: [[Int]]) -> [[Int]] { clients.map { $0.sorted() } }

    /// IID: a seeded shuffle cut into `clients` nearly equal parts.
    public static func iid(count: Int, clients: Int, seed: UInt64) throws -> ClientPartition {
        try checkClients(clients, samples: count)
        var rng = DataRNG(seed: seed)
        let parts = split(rng.permutation(count), clients)
        return ClientPartition(method: "iid", seed: seed, clients: sorted(parts))
    }

    /// Dirichlet label skew (Hsu et al., 2019): for every class, proportions `p ~ Dir(alpha)` over
    /// the clients split that class's shuffled samples. Small `alpha` gives few classes per client;
    /// large `alpha` approaches IID. Draws are repeated (up to 100 times) until every client holds at
    /// least `minSamples`; if that never happens, empty clients take one sample from the largest.
    public static func dirichlet(
        labels: [Int32], classes: Int, clients: Int, alpha: Double, seed: UInt64, minSamples: Int = 1
    ) throws -> ClientPartition {
        try checkLabels(labels, classes: classes)
        try checkClients(clients, samples: labels.count)
        guard alpha > 0, alpha.isFinite else { throw DataError.invalidArgument("Dirichlet alpha must be positive, got \(alpha)") }
        guard minSamples >= 0, minSamples * clients <= labels.count else {
            throw DataError.invalidArgument(
                "minSamples \(minSamples) for \(clients) clients needs \(minSamples * clients) samples, have \(labels.count)")
        }
        var byClass = [[Int]](repeating: [], count: classes)
        for (i, l) in labels.enumerated() { byClass[Int(l)].append(i) }
        var rng = DataRNG(seed: seed)
        var result = [[Int]]()
        for _ in 0..<100 {
            var parts = [[Int]](repeating: [], count: clients)
            for var idx in byClass where !idx.isEmpty {
                rng.shuffle(&idx)
                let p = rng.dirichlet(alpha: alpha, count: clients)
                var cum = 0.0
                var start = 0
                for k in 0..<clients {
                    cum += p[k]
                    let end = k == clients - 1 ? idx.count : Swift.min(idx.count, Int(cum * Double(idx.count)))
                    if end > start { parts[k].append(contentsOf: idx[start..<end]) }
                    start = Swift.max(start, end)
                }
            }
            result = parts
            if parts.allSatisfy({ $0.count >= minSamples }) { break }
        }
        fillEmpty(&result)
        return ClientPartition(method: "dirichlet(alpha=\(alpha))", seed: seed, clients: sorted(result))
    }

    /// Label skew with exactly `k` distinct classes per client (NIID-Bench "#C=k"): every client is
    /// given `k` classes (covering every class when `clients * k >= classes`), and each class's
    /// samples are shared equally among the clients that hold it.
    public static func classesPerClient(
        labels: [Int32], classes: Int, clients: Int, k: Int, seed: UInt64
    ) throws -> ClientPartition {
        try checkLabels(labels, classes: classes)
        try checkClients(clients, samples: labels.count)
        var byClass = [[Int]](repeating: [], count: classes)
        for (i, l) in labels.enumerated() { byClass[Int(l)].append(i) }
        let present = (0..<classes).filter { !byClass[$0].isEmpty }
        guard k >= 1 else { throw DataError.invalidArgument("k (classes per client) must be at least 1, got \(k)") }
        guard k <= present.count else {
            throw DataError.invalidArgument("k = \(k) classes per client, but the data has only \(present.count) classes")
        }
        var rng = DataRNG(seed: seed)
        let order = rng.permutation(present.count).map { present[$0] }
        var owned = [[Int]](repeating: [], count: clients)
        for c in 0..<clients {
            var mine = Set<Int>()
            if clients * k >= present.count && clients < present.count {
                // Cyclic assignment covers all classes when there are fewer clients than classes.
                for j in 0..<k { mine.insert(order[(c * k + j) % present.count]) }
            } else {
                mine.insert(order[c % present.count])
                while mine.count < k { mine.insert(present[rng.int(below: present.count)]) }
            }
            owned[c] = mine.sorted()
        }
        var holders = [[Int]](repeating: [], count: classes)
        for c in 0..<clients { for cls in owned[c] { holders[cls].append(c) } }
        var parts = [[Int]](repeating: [], count: clients)
        for cls in present where !holders[cls].isEmpty {
            var idx = byClass[cls]
            rng.shuffle(&idx)
            for (piece, client) in zip(split(idx, holders[cls].count), holders[cls]) {
                parts[client].append(contentsOf: piece)
            }
        }
        fillEmpty(&parts)
        return ClientPartition(method: "classes-per-client(k=\(k))", seed: seed, clients: sorted(parts))
    }

    /// McMahan et al. (2017) pathological non-IID: samples sorted by label are cut into
    /// `clients * shardsPerClient` equal shards, and each client receives `shardsPerClient` random shards.
    public static func shards(labels: [Int32], clients: Int, shardsPerClient: Int, seed: UInt64) throws -> ClientPartition {
        try checkClients(clients, samples: labels.count)
        guard shardsPerClient >= 1 else { throw DataError.invalidArgument("shardsPerClient must be at least 1, got \(shardsPerClient)") }
        let total = clients * shardsPerClient
        guard total <= labels.count else {
            throw DataError.invalidArgument("\(total) shards need at least \(total) samples, have \(labels.count)")
        }
        var rng = DataRNG(seed: seed)
        // Shuffle first so that ties within a label are broken at random, then sort stably by label.
        let perm = rng.permutation(labels.count)
        let byLabel = perm.enumerated().sorted { a, b in
            labels[a.element] != labels[b.element] ? labels[a.element] < labels[b.element] : a.offset < b.offset
        }.map(\.element)
        let pieces = split(byLabel, total)
        let assign = rng.permutation(total)
        var parts = [[Int]](repeating: [], count: clients)
        for (s, shard) in assign.enumerated() { parts[s / shardsPerClient].append(contentsOf: pieces[shard]) }
        return ClientPartition(method: "shards(\(shardsPerClient) per client)", seed: seed, clients: sorted(parts))
    }

    /// Quantity skew: IID labels, but client sizes follow `distribution` (each client gets at least one sample).
    public static func quantitySkew(
        count: Int, clients: Int, distribution: QuantityDistribution, seed: UInt64
    ) throws -> ClientPartition {
        try checkClients(clients, samples: count)
        var rng = DataRNG(seed: seed)
        var weights: [Double]
        let name: String
        switch distribution {
        case .logNormal(let sigma):
            guard sigma >= 0, sigma.isFinite else { throw DataError.invalidArgument("log-normal sigma must be >= 0, got \(sigma)") }
            weights = (0..<clients).map { _ in DataMath.exp(sigma * rng.normal()) }
            name = "quantity-skew(lognormal sigma=\(sigma))"
        case .powerLaw(let a):
            guard a >= 0, a.isFinite else { throw DataError.invalidArgument("power-law exponent must be >= 0, got \(a)") }
            let ranks = rng.permutation(clients)
            weights = ranks.map { DataMath.pow(Double($0 + 1), -a) }
            name = "quantity-skew(power-law exponent=\(a))"
        }
        let sum = weights.reduce(0, +)
        let rest = count - clients  // one sample per client first
        var sizes = [Int](repeating: 1, count: clients)
        var remainders = [(Double, Int)]()
        var given = 0
        for k in 0..<clients {
            let exact = weights[k] / sum * Double(rest)
            let whole = Int(exact)
            sizes[k] += whole
            given += whole
            remainders.append((exact - Double(whole), k))
        }
        remainders.sort { $0.0 > $1.0 || ($0.0 == $1.0 && $0.1 < $1.1) }
        for j in 0..<(rest - given) { sizes[remainders[j % clients].1] += 1 }
        let perm = rng.permutation(count)
        var parts = [[Int]]()
        var start = 0
        for s in sizes {
            parts.append(Array(perm[start..<(start + s)]))
            start += s
        }
        return ClientPartition(method: name, seed: seed, clients: sorted(parts))
    }
}
