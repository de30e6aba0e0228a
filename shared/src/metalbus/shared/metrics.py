"""Prometheus metrics every service exposes on ``/metrics``.

One registry per runtime (not the process-global default), so several runtimes in one
test process do not collide.
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST as PROMETHEUS_CONTENT_TYPE
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["PROMETHEUS_CONTENT_TYPE", "ServiceMetrics"]


class ServiceMetrics:
    """The metrics the runtime keeps; services may register more on :attr:`registry`."""

    def __init__(self, service: str) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        labels = {"service": service}
        self.rpc_requests = Counter(
            "metalbus_rpc_requests",
            "Bus requests handled",
            ["command", "outcome"],
            registry=self.registry,
        ).labels
        self.rpc_seconds = Histogram(
            "metalbus_rpc_duration_seconds",
            "Time to handle a bus request",
            ["command"],
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=self.registry,
        ).labels
        self.events_published = Counter(
            "metalbus_events_published",
            "Events published to JetStream",
            ["type"],
            registry=self.registry,
        ).labels
        self.events_consumed = Counter(
            "metalbus_events_consumed",
            "Events taken from JetStream",
            ["consumer", "outcome"],
            registry=self.registry,
        ).labels
        self.outbox_pending = Gauge(
            "metalbus_outbox_pending",
            "Events committed but not yet published",
            registry=self.registry,
        )
        self.bus_connected = Gauge(
            "metalbus_bus_connected", "1 while connected to NATS", registry=self.registry
        )
        self.info = Gauge(
            "metalbus_service_info", "Service identity", list(labels), registry=self.registry
        )
        self.info.labels(**labels).set(1)

    def exposition(self) -> bytes:
        """The registry in Prometheus text format."""
        return generate_latest(self.registry)
