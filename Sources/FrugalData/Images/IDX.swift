/// Element types of the IDX format (the third magic byte).
public enum IDXDataType: UInt8, Sendable {
    case uint8 = 0x08, int8 = 0x09, int16 = 0x0B, int32 = 0x0C, float32 = 0x0D, float64 = 0x0E

    /// Bytes per element.
    public var size: Int {
        switch self {
        case .uint8, .int8: 1
        case .int16: 2
        case .int32, .float32: 4
        case .float64: 8
        }
    }
}

/// A parsed IDX file: dimensions, element type and the raw (big-endian) payload.
public struct IDXArray: Sendable {
    public var dims: [Int]
    public var dataType: IDXDataType
    /// The payload after the header, `dims.product * dataType.size` bytes.
    public var bytes: [UInt8]
}

/// Reader for the IDX format of MNIST and Fashion-MNIST (gzip-compressed or plain, detected by magic).
///
/// The header is `00 00 <type> <ndims>` followed by `ndims` big-endian UInt32 sizes. The reader checks
/// the magic, the type, the number of dimensions and that the sizes match the file length exactly.
public enum IDX {
    /// Reads an IDX file (`.gz` or plain; the gzip magic decides, not the name).
    public static func read(path: String, hint: String = "") throws -> IDXArray {
        let raw = try DataFile.read(path, hint: hint)
        let bytes = Gzip.isGzip(raw) ? try Gzip.decompress(raw, source: path) : raw
        return try parse(bytes, source: path)
    }

    /// Parses IDX bytes (already decompressed). `source` names the file in errors.
    public static func parse(_ bytes: [UInt8], source: String, expectedDims: Int? = nil) throws -> IDXArray {
        func fail(_ offset: Int, _ reason: String) -> DataError { .malformed(source: source, offset: offset, reason: reason) }
        guard bytes.count >= 4 else { throw fail(0, "IDX header needs 4 bytes, file has \(bytes.count)") }
        guard bytes[0] == 0, bytes[1] == 0 else {
            throw fail(0, "bad IDX magic \(hexByte(bytes[0])) \(hexByte(bytes[1])) (expected 00 00); not an IDX file")
        }
        guard let type = IDXDataType(rawValue: bytes[2]) else {
            throw fail(2, "unknown IDX data type 0x\(hexByte(bytes[2]))")
        }
        let ndims = Int(bytes[3])
        guard ndims >= 1 else { throw fail(3, "IDX file declares 0 dimensions") }
        if let e = expectedDims, e != ndims {
            throw fail(3, "expected \(e) dimensions, file declares \(ndims)")
        }
        let headerSize = 4 + 4 * ndims
        guard bytes.count >= headerSize else {
            throw fail(4, "IDX header with \(ndims) dimensions needs \(headerSize) bytes, file has \(bytes.count)")
        }
        var dims = [Int]()
        var total = type.size
        for d in 0..<ndims {
            let o = 4 + 4 * d
            let v = Int(bytes[o]) << 24 | Int(bytes[o + 1]) << 16 | Int(bytes[o + 2]) << 8 | Int(bytes[o + 3])
            dims.append(v)
            let (p, overflow) = total.multipliedReportingOverflow(by: v)
            guard !overflow, p <= 1 << 40 else { throw fail(o, "dimensions \(dims) describe an impossibly large array") }
            total = p
        }
        guard bytes.count - headerSize == total else {
            throw fail(
                headerSize,
                "header says \(dims.map(String.init).joined(separator: "x")) \(type) elements (\(total) bytes of data) "
                    + "but the file holds \(bytes.count - headerSize) bytes after the header")
        }
        return IDXArray(dims: dims, dataType: type, bytes: Array(bytes[headerSize...]))
    }

    /// Reads an image file and its label file into an ``ImageDataset`` (1 channel, uint8).
    static func loadPair(
        images: String, labels: String, classes: Int, classNames: [String], hint: String
    ) throws -> ImageDataset {
        let img = try read(path: images, hint: hint)
        guard img.dims.count == 3, img.dataType == .uint8 else {
            throw DataError.malformed(
                source: images, offset: 2,
                reason: "expected a 3-dimensional uint8 image array, found \(img.dims.count) dimensions of \(img.dataType)")
        }
        let lab = try read(path: labels, hint: hint)
        guard lab.dims.count == 1, lab.dataType == .uint8 else {
            throw DataError.malformed(
                source: labels, offset: 2,
                reason: "expected a 1-dimensional uint8 label array, found \(lab.dims.count) dimensions of \(lab.dataType)")
        }
        guard img.dims[0] == lab.dims[0] else {
            throw DataError.malformed(
                source: labels, offset: 4,
                reason: "\(lab.dims[0]) labels for \(img.dims[0]) images in \(images)")
        }
        if let bad = lab.bytes.firstIndex(where: { Int($0) >= classes }) {
            throw DataError.malformed(
                source: labels, offset: 8 + bad, reason: "label \(lab.bytes[bad]) of image \(bad) is not below \(classes)")
        }
        return try ImageDataset(
            pixels: img.bytes, labels: lab.bytes.map { Int32($0) }, channels: 1, height: img.dims[1], width: img.dims[2],
            classes: classes, classNames: classNames)
    }

    /// `dir/name.gz` if it exists, else `dir/name`, else the `.gz` path (for the error message).
    static func locate(_ dir: String, _ name: String) -> String {
        let gz = DataPaths.join(dir, name + ".gz")
        if DataFile.exists(gz) { return gz }
        let plain = DataPaths.join(dir, name)
        return DataFile.exists(plain) ? plain : gz
    }
}

extension IDXDataType: CustomStringConvertible {
    public var description: String {
        switch self {
        case .uint8: "uint8"
        case .int8: "int8"
        case .int16: "int16"
        case .int32: "int32"
        case .float32: "float32"
        case .float64: "float64"
        }
    }
}

/// MNIST handwritten digits (IDX files `train-images-idx3-ubyte(.gz)`, ... as published).
public enum MNIST {
    public static let classNames = (0..<10).map(String.init)
    /// Per-channel statistics of the training set (the customary 0.1307 / 0.3081).
    public static let normalization = Normalization(mean: [0.1307], std: [0.3081])

    /// Loads the training (60,000) or test (10,000) split from `dir` (default `$FRUGAL_DATA/mnist`).
    public static func load(dir: String? = nil, train: Bool) throws -> ImageDataset {
        try loadIDXSplit(dir: dir ?? DataPaths.mnist, train: train, classNames: classNames, dataset: "mnist")
    }
}

/// Fashion-MNIST (Zalando): same IDX layout and file names as MNIST.
public enum FashionMNIST {
    public static let classNames = [
        "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
    ]
    /// Per-channel statistics of the training set (0.2860 / 0.3530).
    public static let normalization = Normalization(mean: [0.2860], std: [0.3530])

    /// Loads the training (60,000) or test (10,000) split from `dir` (default `$FRUGAL_DATA/fashion-mnist`).
    public static func load(dir: String? = nil, train: Bool) throws -> ImageDataset {
        try loadIDXSplit(dir: dir ?? DataPaths.fashionMNIST, train: train, classNames: classNames, dataset: "fashion-mnist")
    }
}

func loadIDXSplit(dir: String, train: Bool, classNames: [String], dataset: String) throws -> ImageDataset {
    let prefix = train ? "train" : "t10k"
    return try IDX.loadPair(
        images: IDX.locate(dir, "\(prefix)-images-idx3-ubyte"),
        labels: IDX.locate(dir, "\(prefix)-labels-idx1-ubyte"),
        classes: 10, classNames: classNames, hint: DataPaths.downloadHint(dataset))
}
