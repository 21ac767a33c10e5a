import Foundation
@testable import FrugalData

/// DataFixture access and temporary folders for the FrugalData tests.
enum DataFixture {
    static var dir: String {
        Bundle.module.resourcePath! + "/Fixtures"
    }
    static func path(_ name: String) -> String { dir + "/" + name }
    static func bytes(_ name: String) throws -> [UInt8] { try DataFile.read(path(name)) }
    static func manifest() throws -> [String: Any] {
        let data = try Data(contentsOf: URL(fileURLWithPath: path("manifest.json")))
        return try JSONSerialization.jsonObject(with: data) as! [String: Any]
    }
}

/// A fresh temporary folder, removed by `cleanup()`.
struct DataTempDir {
    let path: String
    init() {
        path = NSTemporaryDirectory() + "frugal-data-test-" + UUID().uuidString
        try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }
    func file(_ name: String) -> String { path + "/" + name }
    func write(_ name: String, _ bytes: [UInt8]) throws {
        let full = file(name)
        try FileManager.default.createDirectory(
            atPath: (full as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try Data(bytes).write(to: URL(fileURLWithPath: full))
    }
    func cleanup() { try? FileManager.default.removeItem(atPath: path) }
}

extension DataError {
    var message: String { description }
}
