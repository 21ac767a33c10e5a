import Foundation
import FrugalNN

/// Prints what a checkpoint holds (safetensors, sharded folder, GGUF).
func describeCheckpoint(path: String, json: String?) throws {
    let info = try CheckpointInfo.describe(URL(fileURLWithPath: path))
    print(info.table(maxTensors: 40))
    if let json { try info.json().write(to: URL(fileURLWithPath: json), options: .atomic) }
}
