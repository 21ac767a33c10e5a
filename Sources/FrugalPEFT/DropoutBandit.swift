import Foundation
import FrugalCore

/// How a `DropoutBandit` trades exploration for exploitation.
public enum BanditPolicy: Sendable, Equatable, CustomStringConvertible {
    /// UCB1: argmax mean_a / scale + c · sqrt(2 ln n / n_a), untried arms first.
    case ucb(c: Double)
    /// Gaussian Thompson sampling: draw μ_a ~ N(mean_a, σ² / n_a) (σ: pooled standard deviation
    /// of the rewards, at least 10% of their scale), play the largest draw; untried arms first.
    case thompson
    /// ε-greedy: a uniformly random arm with probability ε, else the best mean.
    case epsilonGreedy(Double)

    /// Parses `ucb`, `ucb:C`, `thompson`, `egreedy`, `egreedy:E`.
    public init(parsing s: String) throws {
        let parts = s.split(separator: ":", maxSplits: 1).map(String.init)
        let arg = parts.count > 1 ? Double(parts[1]) : nil
        if parts.count > 1 && arg == nil { throw PEFTError("bandit policy '\(s)': '\(parts[1])' is not a number") }
        switch parts[0] {
        case "ucb": self = .ucb(c: arg ?? 1)
        case "thompson", "ts": self = .thompson
        case "egreedy", "epsilon": self = .epsilonGreedy(arg ?? 0.1)
        default: throw PEFTError("unknown bandit policy '\(s)' (ucb[:c], thompson, egreedy[:ε])")
        }
    }
    public var description: String {
        switch self {
        case .ucb(let c): "ucb:\(c)"
        case .thompson: "thompson"
        case .epsilonGreedy(let e): "egreedy:\(e)"
        }
    }
}

/// Errors of the PEFT layer (bad arguments, files); the message says what was wrong.
public struct PEFTError: Error, CustomStringConvertible, LocalizedError, Sendable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
    public var errorDescription: String? { message }
}

/// A multi-armed bandit over `arms` (e.g. layer-dropout configurations). Rewards are any real
/// numbers (DropPEFT: full-depth loss decrease per simulated second); UCB's bonus is scaled by the
/// largest absolute reward seen so far so that it is unit-free.
///
/// Rewards may arrive later than the choices (DropPEFT pays at the end of a round, after several
/// devices of a class chose): a choice is *pending* until its `update` (or `cancel`), and pending
/// pulls count as plays for exploration (an arm chosen but not yet paid is not "untried", and UCB's
/// bonus shrinks with it), so devices of one class in one round spread over the untried arms.
///
///     var b = DropoutBandit(arms: 6, policy: .ucb(c: 1), seed: 1)
///     let a = b.choose()!           // an arm index
///     b.update(arm: a, reward: r)
public struct DropoutBandit: Sendable {
    public let arms: Int
    public let policy: BanditPolicy
    public private(set) var counts: [Int]
    public private(set) var sums: [Double]
    /// Chosen but not yet paid, per arm.
    public private(set) var pending: [Int]
    var sumSquares: [Double]
    var scale = 0.0
    var rng: RNG

    public init(arms: Int, policy: BanditPolicy, seed: UInt64) {
        precondition(arms >= 1, "a bandit needs at least one arm")
        self.arms = arms
        self.policy = policy
        counts = [Int](repeating: 0, count: arms)
        pending = counts
        sums = [Double](repeating: 0, count: arms)
        sumSquares = sums
        rng = RNG(seed: seed)
    }

    /// Mean reward of each arm (nil: never paid).
    public var means: [Double?] { (0..<arms).map { counts[$0] > 0 ? sums[$0] / Double(counts[$0]) : nil } }
    /// The arm with the best mean so far (ties: the lowest index).
    public var best: Int? {
        var b: Int? = nil
        for a in 0..<arms where counts[a] > 0 {
            if b == nil || sums[a] / Double(counts[a]) > sums[b!] / Double(counts[b!]) { b = a }
        }
        return b
    }

    /// The next arm among `allowed` (all when nil; e.g. those that fit the device's memory), or nil
    /// when none is allowed. The choice is pending until `update` or `cancel`.
    public mutating func choose(allowed: [Bool]? = nil) -> Int? {
        guard let a = pick(allowed: allowed) else { return nil }
        pending[a] += 1
        return a
    }

    mutating func pick(allowed: [Bool]?) -> Int? {
        let sums = self.sums, counts = self.counts, pending = self.pending
        let cand = (0..<arms).filter { allowed?[$0] ?? true }
        guard !cand.isEmpty else { return nil }
        if let untried = cand.first(where: { counts[$0] + pending[$0] == 0 }) { return untried }
        // Arms with a paid reward are scored; when none has one yet, the least pending arm.
        let scored = cand.filter { counts[$0] > 0 }
        guard !scored.isEmpty else { return cand.min { pending[$0] < pending[$1] } }
        func mean(_ a: Int) -> Double { sums[a] / Double(counts[a]) }
        func plays(_ a: Int) -> Double { Double(counts[a] + pending[a]) }
        let s = max(scale, 1e-12)
        switch policy {
        case .ucb(let c):
            let n = cand.reduce(0.0) { $0 + plays($1) }
            return scored.max { a, b in
                mean(a) / s + c * (2 * log(n) / plays(a)).squareRoot() < mean(b) / s + c * (2 * log(n) / plays(b)).squareRoot()
            }
        case .thompson:
            let total = Double(counts.reduce(0, +))
            var ss = 0.0
            for a in 0..<arms where counts[a] > 0 { ss += sumSquares[a] - sums[a] * sums[a] / Double(counts[a]) }
            let sigma = max((ss / max(total - 1, 1)).squareRoot(), 0.1 * s)
            var bestArm = scored[0], bestDraw = -Double.infinity
            for a in scored {
                let draw = mean(a) + sigma / Double(counts[a]).squareRoot() * Double(rng.normal())
                if draw > bestDraw { bestDraw = draw; bestArm = a }
            }
            return bestArm
        case .epsilonGreedy(let e):
            if Double(rng.uniform()) < e { return cand[rng.int(cand.count)] }
            return scored.max { mean($0) < mean($1) }
        }
    }

    /// Records a reward of `arm` (and settles one pending choice of it).
    public mutating func update(arm: Int, reward: Double) {
        precondition(arm >= 0 && arm < arms, "arm \(arm) outside 0..<\(arms)")
        if pending[arm] > 0 { pending[arm] -= 1 }
        guard reward.isFinite else { return }
        counts[arm] += 1
        sums[arm] += reward
        sumSquares[arm] += reward * reward
        scale = max(scale, abs(reward))
    }

    /// The statistics and the random stream's state (Thompson, ε-greedy) as integers (doubles as
    /// bit patterns) for a checkpoint.
    public var statistics: [String: UInt64] {
        var out: [String: UInt64] = ["scale": scale.bitPattern]
        for (i, w) in rng.state.enumerated() { out["rng.\(i)"] = w }
        for a in 0..<arms {
            out["count.\(a)"] = UInt64(counts[a]); out["pending.\(a)"] = UInt64(pending[a])
            out["sum.\(a)"] = sums[a].bitPattern; out["sumsq.\(a)"] = sumSquares[a].bitPattern
        }
        return out
    }

    /// Restores `statistics` (every arm's entries must be there).
    public mutating func restore(statistics s: [String: UInt64]) throws {
        guard let sc = s["scale"] else { throw PEFTError("bandit state: no scale") }
        for a in 0..<arms {
            guard let c = s["count.\(a)"], let p = s["pending.\(a)"], let su = s["sum.\(a)"], let sq = s["sumsq.\(a)"],
                  c < 1 << 40, p < 1 << 40 else { throw PEFTError("bandit state: arm \(a) missing or out of range") }
            counts[a] = Int(c); pending[a] = Int(p); sums[a] = Double(bitPattern: su); sumSquares[a] = Double(bitPattern: sq)
        }
        scale = Double(bitPattern: sc)
        let words = (0..<4).compactMap { s["rng.\($0)"] }
        if !words.isEmpty {
            guard let r = RNG(state: words) else { throw PEFTError("bandit state: bad random-stream state") }
            rng = r
        }
    }

    /// Drops one pending choice of `arm` without a reward.
    public mutating func cancel(arm: Int) {
        precondition(arm >= 0 && arm < arms, "arm \(arm) outside 0..<\(arms)")
        if pending[arm] > 0 { pending[arm] -= 1 }
    }
}
