"""The notifier's series: deliveries by outcome and destination kind, attempts and their latency, dead letters,
consumer lag and queued deliveries. Counted as the dispatcher records them (`DeliveryObserver`); the gauges are
read from the consumer and the dispatcher when a page is rendered.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from services.notifier.alerts import Alert
from services.notifier.deliveries import Attempt, Delivery
from services.observability import Metrics

__all__ = ["ATTEMPT_BUCKETS", "NotifierMetrics"]

# Seconds: a receiver on the same host answers in milliseconds, a distant one in hundreds; time-outs are seconds.
ATTEMPT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class NotifierMetrics:
    def __init__(self, metrics: Metrics | None = None) -> None:
        self.metrics = metrics if metrics is not None else Metrics()
        m = self.metrics
        self.deliveries = m.counter(
            "notifier_deliveries",
            "Deliveries with an outcome, by outcome (delivered, dead) and destination kind (slack, webhook).",
            ("outcome", "destination"),
        )
        self.attempts = m.counter(
            "notifier_delivery_attempts",
            "Requests made to destinations, by status (delivered, failed, refused) and destination kind.",
            ("status", "destination"),
        )
        self.latency = m.histogram(
            "notifier_delivery_attempt_duration_seconds",
            "Time from sending a delivery to the destination's answer (or its failure), by destination kind.",
            ("destination",),
            buckets=ATTEMPT_BUCKETS,
        )
        self.dead_letters = m.counter(
            "notifier_dead_letters", "Deliveries given up on (dead letters written), by destination kind.",
            ("destination",),
        )  # fmt: skip
        self.lag = m.gauge(
            "notifier_consumer_lag_records",
            "Records on the change topic past the notifier's committed position, per partition.",
            ("partition",),
        )
        self.queued = m.gauge(
            "notifier_queued_deliveries", "Deliveries waiting behind their destination's earlier ones."
        )
        self.alerts = m.counter(
            "notifier_alerts", "Operational alerts derived (told to the subscriptions that opted in), by type.",
            ("type",),
        )  # fmt: skip
        self.caught_up = m.gauge(
            "notifier_caught_up", "1 once every owned partition is folded up to where delivery resumes, else 0."
        )

    def alerted(self, alert: Alert, subscriptions: int) -> None:
        """An operational alert derived, queued to `subscriptions` subscriptions (0: nobody opted in)."""
        self.alerts.labels(alert.type.value).inc()

    def attempted(self, attempt: Attempt) -> None:
        kind = attempt.delivery.subscription.destination.kind.value
        self.attempts.labels(attempt.status.value, kind).inc()
        self.latency.labels(kind).observe(attempt.latency_ms / 1000)

    def settled(self, delivery: Delivery, dead: bool) -> None:
        kind = delivery.subscription.destination.kind.value
        self.deliveries.labels("dead" if dead else "delivered", kind).inc()
        if dead:
            self.dead_letters.labels(kind).inc()

    def read_state(
        self, *, lag: Callable[[], Mapping[int, int]], queued: Callable[[], int], caught_up: Callable[[], bool]
    ) -> None:
        """Set the gauges from the running consumer and dispatcher before each page."""

        def refresh() -> None:
            self.lag.clear()
            for partition, records in lag().items():
                self.lag.labels(str(partition)).set(records)
            self.queued.set(queued())
            self.caught_up.set(1 if caught_up() else 0)

        self.metrics.before_scrape(refresh)
