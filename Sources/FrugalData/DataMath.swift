#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// libm entry points used by FrugalData (one place, so the rest need not import Glibc).
@usableFromInline enum DataMath {
    #if canImport(Glibc)
    @usableFromInline static func log(_ x: Double) -> Double { Glibc.log(x) }
    @usableFromInline static func exp(_ x: Double) -> Double { Glibc.exp(x) }
    @usableFromInline static func cos(_ x: Double) -> Double { Glibc.cos(x) }
    @usableFromInline static func pow(_ x: Double, _ y: Double) -> Double { Glibc.pow(x, y) }
    #else
    @usableFromInline static func log(_ x: Double) -> Double { Darwin.log(x) }
    @usableFromInline static func exp(_ x: Double) -> Double { Darwin.exp(x) }
    @usableFromInline static func cos(_ x: Double) -> Double { Darwin.cos(x) }
    @usableFromInline static func pow(_ x: Double, _ y: Double) -> Double { Darwin.pow(x, y) }
    #endif
}
