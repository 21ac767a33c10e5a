import Foundation

/// The Flower version whose Fleet API this device speaks, and the protocol's constants
/// (from flwr 1.42.0: `flwr/common/constant.py`, `flwr/supercore/constant.py`).
public enum FlowerProtocol {
    /// The flwr release this implementation targets (`pip install flwr==1.42.0`). SuperLinks of the
    /// same major.minor are accepted; others are refused unless the caller allows a mismatch.
    public static let version = "1.42.0"
    /// Sent as `flwr-package-name`: the SuperLink only accepts peers that name a Flower package.
    static let packageName = "flwr"
    /// Sent as `flwr-component-name` (free text shown in the SuperLink's version warnings).
    static let componentName = "SuperNode (Frugal)"

    // Signed metadata (HTTP headers; gRPC uses the `-bin` binary keys for the key and signature).
    static let httpPublicKeyHeader = "flwr-public-key"
    static let httpSignatureHeader = "flwr-signature"
    static let grpcPublicKeyKey = "flwr-public-key-bin"
    static let grpcSignatureKey = "flwr-signature-bin"
    static let timestampHeader = "flwr-timestamp"
    static let packageNameHeader = "flwr-package-name"
    static let packageVersionHeader = "flwr-package-version"
    static let componentNameHeader = "flwr-component-name"
    static let versionIncompatibilityHeader = "flwr-version-incompatibility-message"
    /// The SuperLink accepts a signed timestamp from 5 s in the future to 305 s in the past.
    static let timestampTolerance = (ahead: 5.0, behind: 305.0)

    /// Content type of protobuf-over-HTTP requests and responses.
    static let protobufMediaType = "application/protobuf"

    /// Heartbeat interval the SuperNode announces (s), and the bounds the SuperLink enforces.
    public static let heartbeatInterval = 30.0
    static let heartbeatBounds = 10.0...1800.0
    /// A heartbeat is sent every interval × 0.8 (± 10 % jitter), as Flower's `HeartbeatSender`.
    static let heartbeatMultiplier = 0.8

    /// Arrays are split into chunks of at most this many bytes (`FLWR_PRIVATE_MAX_ARRAY_CHUNK_SIZE`).
    public static let defaultChunkSize = 5_242_880
    /// Node id of the SuperLink (messages from the ServerApp come from it; replies go to it).
    static let superLinkNodeID: UInt64 = 1
    /// Message error codes (`flwr.common.constant.ErrorCode`).
    public enum ErrorCode: Int64 { case unknown = 0, clientAppRaisedException = 2 }

    /// Flower `ApiErrorCode`s the device reacts to.
    enum ApiErrorCode: Int {
        case runtimeVersionIncompatible = 1001
        case registrationDisabled = 2001, invalidHeartbeatInterval = 2003, activationFailed = 2004
        case runStatusNotAllowed = 2007, getRunFailed = 2008
    }

    /// The Fleet API calls: gRPC method name and HTTP path (`FleetHttpClient`).
    public enum RPC: String, Sendable, CaseIterable {
        case registerNode = "RegisterNode", activateNode = "ActivateNode", deactivateNode = "DeactivateNode"
        case unregisterNode = "UnregisterNode", sendNodeHeartbeat = "SendNodeHeartbeat"
        case pullMessages = "PullMessages", pushMessages = "PushMessages", getRun = "GetRun", getFab = "GetFab"
        case pushObject = "PushObject", pullObject = "PullObject", confirmMessageReceived = "ConfirmMessageReceived"

        /// `/v1/fleet/register-node` etc.
        var httpPath: String {
            var out = "/v1/fleet/"
            for (i, c) in rawValue.enumerated() {
                if c.isUppercase && i > 0 { out.append("-") }
                out.append(Character(c.lowercased()))
            }
            return out
        }
    }

    /// True when `other` (e.g. "1.42.3") has the same major.minor as `version`.
    static func compatible(_ other: String) -> Bool {
        let a = version.split(separator: "."), b = other.split(separator: ".")
        return a.count >= 2 && b.count >= 2 && a[0] == b[0] && a[1] == b[1]
    }
}

/// What went wrong, with a message that says what and where.
public struct FlowerError: Error, CustomStringConvertible, Equatable {
    public enum Kind: String, Sendable {
        /// No connection, or the connection broke.
        case transport
        /// The SuperLink answered something this device does not understand.
        case protocolViolation = "protocol"
        /// The SuperLink refused the signed metadata (or the key / clock is wrong).
        case authentication
        /// The SuperLink runs another Flower major.minor than the one this device speaks.
        case versionMismatch = "version"
        /// A message type this device cannot handle (it replies with an error message).
        case unsupportedMessage = "unsupported-message"
        /// Records, arrays or objects that are malformed or do not fit the model.
        case content
        /// The SuperLink reported an error (Flower `ApiErrorCode`).
        case server
    }
    public var kind: Kind
    public var message: String
    /// The Flower `ApiErrorCode` for `.server` errors.
    public var code: Int?

    public init(_ kind: Kind, _ message: String, code: Int? = nil) {
        self.kind = kind; self.message = message; self.code = code
    }
    public var description: String { message }
}
