@_exported import FrugalCore
