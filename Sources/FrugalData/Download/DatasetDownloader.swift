import Foundation

/// Downloads MNIST, Fashion-MNIST and CIFAR-10 from their official locations, checks the
/// published MD5 checksums (as torchvision lists them), and unpacks them into the layout the
/// loaders read: `root/mnist/*.gz`, `root/fashion-mnist/*.gz`, `root/cifar-10-batches-bin/`.
///
/// ```swift
/// try DatasetDownloader.download(.cifar10)                                  // into DataPaths.root
/// try DatasetDownloader.download(.mnist, root: "/tmp/d", baseURL: "http://127.0.0.1:8000/")
/// ```
public enum DatasetDownloader {
    public enum Dataset: String, CaseIterable, Sendable {
        case mnist
        case fashionMNIST = "fashion-mnist"
        case cifar10
    }

    /// A file to fetch: its name below the base URL and its published MD5.
    public struct RemoteFile: Sendable, Equatable {
        public var name: String
        public var md5: String
        public init(name: String, md5: String) {
            self.name = name
            self.md5 = md5
        }
    }

    /// Where a data set comes from and where it goes.
    public struct Source: Sendable, Equatable {
        /// Base URL; files are fetched from `baseURL + name`.
        public var baseURL: String
        public var files: [RemoteFile]
        /// Folder below the root that holds the finished data set.
        public var folder: String
        /// True for a `.tar.gz` archive that unpacks (into the root) to `folder`.
        public var isTarArchive: Bool
        /// Files that must exist in `folder` when the data set is complete.
        public var expected: [String]

        public init(baseURL: String, files: [RemoteFile], folder: String, isTarArchive: Bool, expected: [String]) {
            self.baseURL = baseURL
            self.files = files
            self.folder = folder
            self.isTarArchive = isTarArchive
            self.expected = expected
        }
    }

    /// The official source of `dataset` (optionally with another base URL, e.g. a mirror or a test server).
    public static func source(for dataset: Dataset, baseURL: String? = nil) -> Source {
        let idxNames = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
        var s: Source
        switch dataset {
        case .mnist:
            s = Source(
                baseURL: "https://ossci-datasets.s3.amazonaws.com/mnist/",
                files: [
                    RemoteFile(name: "train-images-idx3-ubyte.gz", md5: "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
                    RemoteFile(name: "train-labels-idx1-ubyte.gz", md5: "d53e105ee54ea40749a09fcbcd1e9432"),
                    RemoteFile(name: "t10k-images-idx3-ubyte.gz", md5: "9fb629c4189551a2d022fa330f9573f3"),
                    RemoteFile(name: "t10k-labels-idx1-ubyte.gz", md5: "ec29112dd5afa0611ce80d1b7f02629c"),
                ],
                folder: "mnist", isTarArchive: false, expected: idxNames)
        case .fashionMNIST:
            s = Source(
                baseURL: "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
                files: [
                    RemoteFile(name: "train-images-idx3-ubyte.gz", md5: "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
                    RemoteFile(name: "train-labels-idx1-ubyte.gz", md5: "25c81989df183df01b3e8a0aad5dffbe"),
                    RemoteFile(name: "t10k-images-idx3-ubyte.gz", md5: "bef4ecab320f06d8554ea6380940ec79"),
                    RemoteFile(name: "t10k-labels-idx1-ubyte.gz", md5: "bb300cfdad3c16e7a12a480ee83cd310"),
                ],
                folder: "fashion-mnist", isTarArchive: false, expected: idxNames)
        case .cifar10:
            s = Source(
                baseURL: "https://www.cs.toronto.edu/~kriz/",
                files: [RemoteFile(name: "cifar-10-binary.tar.gz", md5: "c32a1d4ab5d03f1284b67883e8d87530")],
                folder: "cifar-10-batches-bin", isTarArchive: true,
                expected: (1...5).map { "data_batch_\($0).bin" } + ["test_batch.bin"])
        }
        if let baseURL { s.baseURL = baseURL.hasSuffix("/") ? baseURL : baseURL + "/" }
        return s
    }

    /// True when every expected file of `source` is already in place (IDX files with or without `.gz`).
    public static func isPresent(_ source: Source, root: String) -> Bool {
        let dir = DataPaths.join(root, source.folder)
        return source.expected.allSatisfy { name in
            DataFile.exists(DataPaths.join(dir, name)) || DataFile.exists(DataPaths.join(dir, name + ".gz"))
        }
    }

    /// Downloads, verifies and unpacks `dataset` below `root` unless it is already there (or `force`).
    /// - Returns: the data set folder.
    @discardableResult
    public static func download(
        _ dataset: Dataset, root: String = DataPaths.root, baseURL: String? = nil, force: Bool = false,
        log: ((String) -> Void)? = nil
    ) throws -> String {
        try download(source(for: dataset, baseURL: baseURL), root: root, force: force, log: log)
    }

    /// Downloads `source` (see ``download(_:root:baseURL:force:log:)``). Files are verified before
    /// anything is written, so a corrupt download leaves no file behind.
    @discardableResult
    public static func download(
        _ source: Source, root: String = DataPaths.root, force: Bool = false, log: ((String) -> Void)? = nil
    ) throws -> String {
        let dir = DataPaths.join(root, source.folder)
        if !force && isPresent(source, root: root) {
            log?("\(dir): already present")
            return dir
        }
        for file in source.files {
            let url = source.baseURL + file.name
            log?("downloading \(url)")
            let bytes = try HTTPClient.get(url)
            let md5 = Checksums.md5Hex(bytes)
            guard md5 == file.md5.lowercased() else {
                throw DataError.checksumMismatch(file: url, algorithm: "MD5", expected: file.md5.lowercased(), actual: md5)
            }
            log?("\(file.name): \(bytes.count) bytes, MD5 ok")
            if source.isTarArchive {
                let tar = try Gzip.decompress(bytes, source: file.name)
                let written = try Tar.extract(tar, to: root, source: file.name)
                log?("extracted \(written.count) files into \(root)")
            } else {
                try DataFile.write(bytes, to: DataPaths.join(dir, file.name))
            }
        }
        guard isPresent(source, root: root) else {
            let missing = source.expected.filter {
                !DataFile.exists(DataPaths.join(dir, $0)) && !DataFile.exists(DataPaths.join(dir, $0 + ".gz"))
            }
            throw DataError.malformed(
                source: source.files.map(\.name).joined(separator: ", "), offset: nil,
                reason: "download finished but \(dir) lacks \(missing.joined(separator: ", "))")
        }
        return dir
    }
}
