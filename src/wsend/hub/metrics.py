"""Prometheus metrics of a hub node, served at ``/metrics`` (prometheus-client).

Each :class:`HubMetrics` has its own registry, so several hubs in one process (tests, workers)
don't mix their numbers.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["CONTENT_TYPE", "HubMetrics"]

CONTENT_TYPE = CONTENT_TYPE_LATEST

# Command latencies from 0.1 ms (ping) to 10 s (a slow RPC handler).
_LATENCY_BUCKETS = (0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1, 10)


class HubMetrics:
    """Counters and gauges of one hub node."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.connections = Gauge("wsend_hub_connections", "Open client connections.", registry=r)
        self.subscriptions = Gauge(
            "wsend_hub_subscriptions", "Active channel subscriptions.", registry=r
        )
        self.channels = Gauge("wsend_hub_channels", "Channels with local subscribers.", registry=r)
        self.messages_in = Counter(
            "wsend_hub_messages_received", "WebSocket messages received.", registry=r
        )
        self.messages_out = Counter(
            "wsend_hub_messages_sent", "WebSocket messages sent.", registry=r
        )
        self.bytes_in = Counter("wsend_hub_bytes_received", "Bytes received.", registry=r)
        self.bytes_out = Counter("wsend_hub_bytes_sent", "Bytes sent.", registry=r)
        self.publications = Counter(
            "wsend_hub_publications", "Publications delivered to local subscribers.", registry=r
        )
        self.drops = Counter(
            "wsend_hub_dropped", "Messages dropped, by reason.", ["reason"], registry=r
        )
        self.disconnects = Counter(
            "wsend_hub_disconnects", "Connections closed, by close code.", ["code"], registry=r
        )
        self.commands = Histogram(
            "wsend_hub_command_seconds",
            "Time to execute client commands, by method.",
            ["method"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.api_requests = Counter(
            "wsend_hub_api_requests",
            "HTTP API requests, by method and status.",
            ["method", "status"],
            registry=r,
        )

    def render(self) -> bytes:
        """The metrics in the Prometheus text format."""
        return generate_latest(self.registry)
