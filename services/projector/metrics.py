"""The projector's metrics, served by its own small endpoint (`/metrics`, `/healthz` on `FLAGS_PROJECTOR_PORT`).

Per partition, read at scrape time: the next offset applied, how many records
the topic holds beyond it (`lag_records`, against the consumer's high watermark)
and, while that is above 0, how old the last applied record is (`lag_seconds`:
how far behind the projector runs; 0 when caught up). Per batch: its duration,
what it applied, and each dead letter by reason (the reason's first words:
the rest names a record). `event_age_seconds` is each record's age when its
batch committed: the propagation delay from the relay to the read models.
Once connected (`watch`), also read at scrape time: whether `/readyz` would
answer ready, and since when each engaged kill switch has been engaged.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any, NamedTuple

from services.observability import LabelGuard, Metrics
from services.observability.endpoint import Readiness
from services.projector.invalidation import BackgroundInvalidator
from services.projector.projection import BatchResult

__all__ = ["Lag", "ProjectorMetrics", "reason_of"]

AGE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


class Lag(NamedTuple):
    """A partition's next offset to apply, records behind its end (None: end not known yet), seconds behind."""

    next_offset: int
    records: int | None
    seconds: float


def reason_of(reason: str) -> str:
    """A dead letter's reason as a label: what comes before its first `:` (the rest names the record)."""
    return reason.split(":", 1)[0].strip()[:60] or "unknown"


class ProjectorMetrics:
    """What the projector counts; `consumer` gives the Kafka consumer once the broker made it (else None)."""

    def __init__(self, consumer: Callable[[], Any], *, clock: Callable[[], float] = time.time) -> None:
        self.metrics = m = Metrics()
        self._consumer = consumer
        self._clock = clock
        self._started = clock()
        self._next: dict[int, int] = {}  # partition -> next offset applied
        self._newest: dict[int, float] = {}  # partition -> timestamp (s) of the last record applied
        self._reasons = LabelGuard(limit=50)
        self.batches = m.counter("projector_batches", "Batches applied.")
        self.failures = m.counter("projector_batch_failures", "Batches not applied (a dependency failed), retried.")
        self.applied = m.counter("projector_events_applied", "Events applied to the read models.")
        self.duplicates = m.counter("projector_duplicate_events", "Events skipped as already applied.")
        self.chain_breaks = m.counter("projector_chain_breaks", "Events applied despite a hash chain break.")
        self.dead_letters = m.counter("dead_letters", "Records sent to the dead-letter topic, by reason.", ("reason",))
        self.duration = m.histogram("projector_batch_duration_seconds", "Time to apply one batch.")
        self.age = m.histogram(
            "projector_event_age_seconds", "A record's age when its batch committed.", buckets=AGE_BUCKETS
        )
        self.offset = m.gauge("projector_offset", "The next offset to apply, per partition.", ("partition",))
        self.lag_records = m.gauge(
            "projector_lag_records", "Records on the topic not yet applied, per partition.", ("partition",)
        )
        self.lag_seconds = m.gauge(
            "projector_lag_seconds", "While behind: the age of the last record applied, per partition.", ("partition",)
        )
        self.ready = m.gauge("projector_ready", "1 while /readyz answers ready, else 0.")
        self.killed = m.gauge("kill_switches_engaged", "Ops flags whose kill switch is engaged.")
        self.killed_since = m.gauge(
            "kill_switch_engaged_timestamp_seconds", "When each engaged kill switch was engaged, by flag.", ("flag",)
        )
        self.invalidations_pending = m.gauge(
            "projector_cache_invalidations_pending", "Cached documents changed and not yet invalidated in Redis."
        )
        self.invalidation_failures = m.counter(
            "projector_cache_invalidation_failures", "Invalidations or purges Redis did not take (retried)."
        )
        self._flags = LabelGuard(limit=200)
        m.before_scrape(self.refresh)

    def watch_invalidations(self, invalidations: BackgroundInvalidator) -> None:
        """Before each scrape, read how much the background invalidator has queued and how often it failed."""
        counted = 0

        async def refresh() -> None:
            nonlocal counted
            self.invalidations_pending.set(invalidations.pending)
            self.invalidation_failures.inc(invalidations.failures - counted)
            counted = invalidations.failures

        self.metrics.before_scrape(refresh)

    def watch(
        self,
        *,
        ready: Callable[[], Awaitable[Readiness]],
        kill_switches: Callable[[], Awaitable[dict[str, datetime] | None]],
    ) -> None:
        """Before each scrape, also judge readiness and read the engaged kill switches (None: unknown, kept)."""

        async def refresh() -> None:
            self.ready.set(1 if (await ready()).ready else 0)
            engaged = await kill_switches()
            if engaged is None:
                return
            self.killed.set(len(engaged))
            self.killed_since.clear()
            for flag, since in engaged.items():
                self.killed_since.labels(self._flags(flag)).set(since.timestamp())

        self.metrics.before_scrape(refresh)

    def batch(self, records: Sequence[Any], result: BatchResult | None, seconds: float) -> None:
        """One batch handled in `seconds`; `result` None: it failed and will be redelivered."""
        self.duration.observe(seconds)
        if result is None:
            self.failures.inc()
            return
        self.batches.inc()
        self.applied.inc(result.applied)
        self.duplicates.inc(result.duplicates)
        self.chain_breaks.inc(result.chain_breaks)
        for reason in result.dead_letter_reasons:
            self.dead_letters.labels(self._reasons(reason_of(reason))).inc()
        now = self._clock()
        for record in records:
            partition = record.partition
            if record.offset + 1 > self._next.get(partition, -1):
                self._next[partition] = record.offset + 1
            stamp = getattr(record, "timestamp", None)
            if stamp is not None:
                self._newest[partition] = max(self._newest.get(partition, 0.0), stamp / 1000)
                self.age.observe(max(0.0, now - stamp / 1000))

    async def lags(self) -> dict[int, Lag] | None:
        """Per assigned partition, how far the projector runs behind the topic's end; None before the consumer exists.

        A partition whose end Kafka has not told yet (no fetch answered) is left out.
        """
        consumer = self._consumer()
        if consumer is None:
            return None
        now = self._clock()
        lags: dict[int, Lag] = {}
        for tp in consumer.assignment():
            applied = self._next.get(tp.partition)
            if applied is None:
                applied = await consumer.position(tp)
            end = consumer.highwater(tp)
            behind = None if end is None else max(0, end - applied)
            since = self._newest.get(tp.partition, self._started)
            lags[tp.partition] = Lag(applied, behind, max(0.0, now - since) if behind else 0.0)
        return lags

    async def refresh(self) -> None:
        for partition, lag in (await self.lags() or {}).items():
            label = str(partition)
            self.offset.labels(label).set(lag.next_offset)
            if lag.records is not None:
                self.lag_records.labels(label).set(lag.records)
                self.lag_seconds.labels(label).set(lag.seconds)
