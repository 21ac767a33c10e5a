import Testing
import FrugalCore
@testable import FrugalMoE

@Suite struct ExpertSplitTests {
    @Test func splitRowFromTheta() {
        #expect(ExpertSplit(intermediate: 10, theta: 0).splitRow == 0)
        #expect(ExpertSplit(intermediate: 10, theta: 0.25).splitRow == 3)  // 2.5 rounds away from zero
        #expect(ExpertSplit(intermediate: 10, theta: 0.4).splitRow == 4)
        #expect(ExpertSplit(intermediate: 10, theta: 1).splitRow == 10)
        #expect(ExpertSplit(intermediate: 10, theta: 1.7).splitRow == 10)
        #expect(ExpertSplit.byteRange(3..<10, hidden: 4, dtype: .float16) == 72..<240)
    }

    @Test func packLayoutIsRowBlocks() throws {
        let I = 3, h = 2
        let gate = Tensor((0..<6).map { Float($0) }, shape: [I, h])
        let up = Tensor((0..<6).map { Float(10 + $0) }, shape: [I, h])
        let down = Tensor((0..<6).map { Float(20 + $0) }, shape: [h, I])  // down[j, i] = 20 + 3j + i
        let bytes = try ExpertSplit.pack(gate: gate, up: up, down: down)
        let f = bytes.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
        #expect(f == [0, 1, 10, 11, 20, 23,  2, 3, 12, 13, 21, 24,  4, 5, 14, 15, 22, 25])
        #expect(throws: OffloadError.self) { try ExpertSplit.pack(gate: gate, up: up, down: gate) }
    }

    @Test(arguments: [DType.float32, .float16, .bfloat16])
    func topPlusBottomEqualsWhole(dtype: DType) throws {
        var rng = TestRNG(7)
        let I = 21, h = 19
        let gate = makeTensor(rng.array(I * h, scale: 0.5), shape: [I, h], dtype: dtype)
        let up = makeTensor(rng.array(I * h, scale: 0.5), shape: [I, h], dtype: dtype)
        let down = makeTensor(rng.array(h * I, scale: 0.5), shape: [h, I], dtype: dtype)
        let x = rng.array(h)
        let ref = referenceExpert(gate: gate, up: up, down: down, x: x)
        let packed = try ExpertSplit.pack(gate: gate, up: up, down: down)
        let rb = ExpertSplit.rowBytes(hidden: h, dtype: dtype)
        for theta in [0, 0.25, 0.4, 1.0] {
            let sp = ExpertSplit(intermediate: I, theta: theta)
            var y = [Float](repeating: 0, count: h)
            var w: Float = 1
            packed.withUnsafeBytes { p in
                for seg in [sp.top, sp.bottom] where !seg.isEmpty {
                    ExpertKernel.accumulate(rows: p.baseAddress! + seg.lowerBound * rb, rowCount: seg.count, hidden: h,
                                            dtype: dtype, x: x, tokens: 1, weights: &w, y: &y)
                }
            }
            let scale = ref.map(abs).max()!
            for j in 0..<h { #expect(abs(Double(y[j]) - ref[j]) <= 1e-5 * scale, "θ=\(theta) j=\(j)") }
        }
    }
}
