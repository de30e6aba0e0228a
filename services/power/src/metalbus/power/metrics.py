"""What the power service counts, on its ``/metrics`` beside the runtime's own."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

from metalbus.shared.metrics import ServiceMetrics


class PowerMetrics:
    """Polling sweeps, BMC queries, power actions and released BMC sessions."""

    def __init__(self, metrics: ServiceMetrics) -> None:
        registry = metrics.registry
        self.sweep_seconds = Histogram(
            "metalbus_power_sweep_seconds",
            "Time of one polling sweep of every BMC",
            buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120),
            registry=registry,
        )
        self.queries = Counter(
            "metalbus_power_poll_queries",
            "BMCs in polling sweeps, by outcome (ok, failed, skipped: breaker open or busy)",
            ["outcome"],
            registry=registry,
        ).labels
        self.state_changes = Counter(
            "metalbus_power_poll_state_changes",
            "Power states found changed by polling",
            registry=registry,
        )
        self.actions = Counter(
            "metalbus_power_actions",
            "Power actions, by action and outcome (ok or the error code)",
            ["action", "outcome"],
            registry=registry,
        ).labels
        self.sessions_released = Counter(
            "metalbus_power_sessions_released",
            "BMC sessions logged out after going unused for SESSION_IDLE_S",
            registry=registry,
        )
