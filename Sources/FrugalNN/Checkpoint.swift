import Foundation
import FrugalCore

/// Saving and loading tensors, modules and optimiser state as safetensors files.
public enum Checkpoint {
    /// Writes named tensors atomically (temp file + rename), keeping each tensor's dtype.
    public static func save(_ tensors: [String: Tensor], to url: URL, metadata: [String: String] = [:]) throws {
        let entries = tensors.keys.sorted().map { name -> SafetensorsWriter.Tensor in
            let t = tensors[name]!
            if t.dtype == .float32 { return .init(name: name, shape: t.shape, floats: t.array) }
            let c = t.isContiguous ? t : t.converted(to: t.dtype)
            let bytes = [UInt8](UnsafeRawBufferPointer(start: c.storage.raw + c.offset * c.dtype.size, count: c.count * c.dtype.size))
            return .init(name: name, dtype: t.dtype, shape: t.shape, bytes: bytes)
        }
        try SafetensorsWriter.write(entries, metadata: metadata, to: url)
    }

    /// Reads every tensor of a safetensors file (or sharded checkpoint folder) as float32 tensors,
    /// or keeping f16/bf16 storage when `keepDType`.
    public static func load(_ url: URL, keepDType: Bool = false) throws -> [String: Tensor] {
        let ckpt = try SafetensorsCheckpoint(url: url)
        var out: [String: Tensor] = [:]
        for name in ckpt.names { out[name] = try tensor(name, in: ckpt, keepDType: keepDType) }
        return out
    }

    /// One tensor of a checkpoint.
    public static func tensor(_ name: String, in ckpt: SafetensorsCheckpoint, keepDType: Bool = false) throws -> Tensor {
        let info = try ckpt.info(name)
        if keepDType, let dt = info.dtype, dt != .float32 {
            let raw = try ckpt.rawBytes(name)
            let t = Tensor(zeros: info.shape, dtype: dt, zeroed: false)
            if raw.count > 0 { t.storage.raw.copyMemory(from: raw.baseAddress!, byteCount: raw.count) }
            return t
        }
        return Tensor(try ckpt.floats(name), shape: info.shape)
    }

    /// Saves a module's state dict, and optionally its optimiser's state under "optimizer.*".
    public static func save(_ module: Module, optimizer: (any Optimizer)? = nil, to url: URL, metadata: [String: String] = [:]) throws {
        var tensors = module.stateDict()
        if let optimizer { for (k, v) in optimizer.stateDict() { tensors["optimizer." + k] = v } }
        try save(tensors, to: url, metadata: metadata.merging(["format": "frugal"]) { a, _ in a })
    }

    /// Loads a module's state dict (and the optimiser's, when present and asked for).
    public static func load(into module: Module, optimizer: (any Optimizer)? = nil, from url: URL) throws {
        let all = try load(url)
        let model = all.filter { !$0.key.hasPrefix("optimizer.") }
        try module.loadStateDict(model)
        if let optimizer {
            var opt: [String: Tensor] = [:]
            for (k, v) in all where k.hasPrefix("optimizer.") { opt[String(k.dropFirst("optimizer.".count))] = v }
            try optimizer.loadStateDict(opt)
        }
    }
}
