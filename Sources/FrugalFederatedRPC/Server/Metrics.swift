import Foundation
import NIOCore
import NIOPosix
import NIOHTTP1
import Prometheus

/// The coordinator's Prometheus metrics: rounds, devices, bytes on the wire, round latency and
/// rejected messages. `MetricsEndpoint` serves them as text at `GET /metrics`.
public final class FederationMetrics: Sendable {
    public let registry = PrometheusCollectorRegistry()
    let roundsCompleted: Counter
    let roundLatency: ValueHistogram
    let devicesSeen: Gauge
    let devicesSelected: Gauge
    let bytesDown: Counter
    let bytesUp: Counter
    let updatesAccepted: Counter
    let rejected: Counter
    let refusedCalls: Counter
    let late: Counter
    let lastAccuracy: Gauge

    public init() {
        roundsCompleted = registry.makeCounter(name: "frugal_fl_rounds_completed_total", help: "Rounds aggregated and checkpointed.")
        roundLatency = registry.makeValueHistogram(name: "frugal_fl_round_seconds",
                                                   buckets: [0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300],
                                                   help: "Wall-clock seconds from a round's start to its checkpoint.")
        devicesSeen = registry.makeGauge(name: "frugal_fl_devices_seen", help: "Enrolled devices that joined since the start.")
        devicesSelected = registry.makeGauge(name: "frugal_fl_devices_selected", help: "Devices selected in the open round.")
        bytesDown = registry.makeCounter(name: "frugal_fl_download_bytes_total", help: "Download stream bytes sent to devices.")
        bytesUp = registry.makeCounter(name: "frugal_fl_upload_bytes_total", help: "Upload stream bytes received from devices.")
        updatesAccepted = registry.makeCounter(name: "frugal_fl_updates_accepted_total", help: "Updates accepted into rounds.")
        rejected = registry.makeCounter(name: "frugal_fl_updates_rejected_total", help: "Updates rejected (malformed, wrong shape, non-finite, oversized).")
        refusedCalls = registry.makeCounter(name: "frugal_fl_calls_refused_total", help: "Calls refused for credentials or identity.")
        late = registry.makeCounter(name: "frugal_fl_updates_late_total", help: "Updates that arrived after their round closed.")
        lastAccuracy = registry.makeGauge(name: "frugal_fl_test_accuracy", help: "Last evaluated test accuracy of the global model.")
    }

    /// The metrics in Prometheus' text format.
    public func text() -> String {
        var buffer: [UInt8] = []
        registry.emit(into: &buffer)
        return String(decoding: buffer, as: UTF8.self)
    }
}

/// A minimal HTTP/1.1 server for `GET /metrics` (everything else: 404).
public final class MetricsEndpoint: Sendable {
    let channel: any Channel
    /// The bound port (useful with port 0).
    public let port: Int

    public init(host: String, port: Int, metrics: FederationMetrics, group: any EventLoopGroup) async throws {
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.pipeline.configureHTTPServerPipeline().flatMap {
                    channel.pipeline.addHandler(MetricsHandler(metrics: metrics))
                }
            }
        channel = try await bootstrap.bind(host: host, port: port).get()
        self.port = channel.localAddress?.port ?? port
    }

    public func close() async { try? await channel.close().get() }
}

final class MetricsHandler: ChannelInboundHandler, Sendable {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart
    let metrics: FederationMetrics
    init(metrics: FederationMetrics) { self.metrics = metrics }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard case .head(let head) = unwrapInboundIn(data) else { return }
        let ok = head.method == .GET && (head.uri == "/metrics" || head.uri.hasPrefix("/metrics?"))
        let body = ok ? metrics.text() : "not found: GET /metrics\n"
        var headers = HTTPHeaders()
        headers.add(name: "content-type", value: ok ? "text/plain; version=0.0.4" : "text/plain")
        headers.add(name: "content-length", value: String(body.utf8.count))
        headers.add(name: "connection", value: "close")
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: ok ? .ok : .notFound, headers: headers))), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(string: body)))), promise: nil)
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in channel.close(promise: nil) }
    }
}
