import Foundation
import Testing
@testable import FrugalData

@Suite struct FederatedTests {
    /// 10 classes x 60 samples, interleaved labels.
    let labels: [Int32] = (0..<600).map { Int32($0 % 10) }

    func checkCover(_ p: ClientPartition, _ n: Int) {
        let all = p.clients.flatMap { $0 }
        #expect(all.count == n)
        #expect(Set(all).count == n)
        #expect(p.clients.allSatisfy { !$0.isEmpty })
    }

    @Test func iid() throws {
        let p = try FederatedPartition.iid(count: 103, clients: 10, seed: 1)
        checkCover(p, 103)
        #expect(p.sizes.max()! - p.sizes.min()! <= 1)
        #expect(try FederatedPartition.iid(count: 103, clients: 10, seed: 1) == p)
        #expect(try FederatedPartition.iid(count: 103, clients: 10, seed: 2) != p)
    }

    @Test func dirichletSkew() throws {
        func meanClasses(_ alpha: Double) throws -> Double {
            let p = try FederatedPartition.dirichlet(labels: labels, classes: 10, clients: 20, alpha: alpha, seed: 3)
            checkCover(p, 600)
            let s = p.summary(labels: labels, classes: 10)
            return Double(s.clients.map(\.distinctClasses).reduce(0, +)) / 20
        }
        let skewed = try meanClasses(0.1)
        let mild = try meanClasses(100)
        #expect(skewed < 4)
        #expect(mild > 9)
        let a = try FederatedPartition.dirichlet(labels: labels, classes: 10, clients: 20, alpha: 0.5, seed: 3)
        #expect(try FederatedPartition.dirichlet(labels: labels, classes: 10, clients: 20, alpha: 0.5, seed: 3) == a)
        // Even with a tiny alpha and many clients every client gets a sample.
        let tiny = try FederatedPartition.dirichlet(labels: labels, classes: 10, clients: 300, alpha: 0.01, seed: 1)
        checkCover(tiny, 600)
        #expect(throws: DataError.self) {
            try FederatedPartition.dirichlet(labels: labels, classes: 10, clients: 601, alpha: 1, seed: 1)
        }
        #expect(throws: DataError.self) {
            try FederatedPartition.dirichlet(labels: labels, classes: 10, clients: 5, alpha: 0, seed: 1)
        }
        #expect(throws: DataError.self) {
            try FederatedPartition.dirichlet(labels: labels, classes: 5, clients: 5, alpha: 1, seed: 1)
        }
    }

    @Test func classesPerClient() throws {
        for (clients, k) in [(20, 2), (4, 3), (10, 1), (3, 4)] {
            let p = try FederatedPartition.classesPerClient(labels: labels, classes: 10, clients: clients, k: k, seed: 5)
            let s = p.summary(labels: labels, classes: 10)
            #expect(s.clients.allSatisfy { $0.distinctClasses == k }, "\(clients) clients, k=\(k)")
            if clients * k >= 10 { checkCover(p, 600) }
        }
        #expect {
            try FederatedPartition.classesPerClient(labels: labels, classes: 10, clients: 5, k: 11, seed: 1)
        } throws: { e in "\(e)".contains("only 10 classes") }
        #expect(throws: DataError.self) {
            try FederatedPartition.classesPerClient(labels: labels, classes: 10, clients: 5, k: 0, seed: 1)
        }
    }

    @Test func shards() throws {
        let p = try FederatedPartition.shards(labels: labels, clients: 30, shardsPerClient: 2, seed: 1)
        checkCover(p, 600)
        #expect(p.sizes.allSatisfy { $0 == 20 })
        // Shards of 10 sorted samples hold a single class, so each client has at most 2 classes.
        #expect(p.summary(labels: labels, classes: 10).clients.allSatisfy { $0.distinctClasses <= 2 })
        #expect(throws: DataError.self) { try FederatedPartition.shards(labels: labels, clients: 400, shardsPerClient: 2, seed: 1) }
    }

    @Test func quantitySkew() throws {
        let even = try FederatedPartition.quantitySkew(count: 600, clients: 7, distribution: .logNormal(sigma: 0), seed: 1)
        checkCover(even, 600)
        #expect(even.sizes.max()! - even.sizes.min()! <= 1)
        let skew = try FederatedPartition.quantitySkew(count: 600, clients: 20, distribution: .logNormal(sigma: 1.5), seed: 1)
        checkCover(skew, 600)
        #expect(skew.sizes.max()! > 4 * skew.sizes.min()!)
        let power = try FederatedPartition.quantitySkew(count: 600, clients: 10, distribution: .powerLaw(exponent: 1), seed: 1)
        checkCover(power, 600)
        // Sizes follow 1/rank: the largest client holds about 600 / H(10) = 205 samples.
        #expect(abs(power.sizes.max()! - 205) <= 2)
        #expect(throws: DataError.self) {
            try FederatedPartition.quantitySkew(count: 5, clients: 6, distribution: .logNormal(sigma: 1), seed: 1)
        }
    }

    @Test func summaryTableAndJSON() throws {
        let p = try FederatedPartition.classesPerClient(labels: labels, classes: 10, clients: 4, k: 3, seed: 2)
        let s = p.summary(labels: labels, classes: 10)
        let table = s.description
        #expect(table.contains("client  samples"))
        #expect(table.split(separator: "\n").count == 2 + 4 + 1)
        #expect(s.totalSamples == p.clients.reduce(0) { $0 + $1.count })
        let json = try s.json()
        let back = try JSONDecoder().decode(PartitionSummary.self, from: Data(json.utf8))
        #expect(back == s)
        let pj = try JSONEncoder().encode(p)
        #expect(try JSONDecoder().decode(ClientPartition.self, from: pj) == p)
        // Many classes: compact table.
        let many: [Int32] = (0..<300).map { Int32($0 % 30) }
        let big = try FederatedPartition.iid(count: 300, clients: 3, seed: 1).summary(labels: many, classes: 30)
        #expect(big.description.contains("largest classes"))
        // Client data sets.
        let ds = try syntheticImageDataset(600)
        let parts = try FederatedPartition.iid(count: 600, clients: 3, seed: 1).datasets(ds)
        #expect(parts.map(\.count) == [200, 200, 200])
    }
}
