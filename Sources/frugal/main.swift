import FrugalCore
print("frugal")
