"""The notifier's two watches beside its change consumer: the projector's dead-letter topic and its lag.

Both tell their alerts only once the change consumer has caught up (before that, which subscriptions
are in force is not known). The dead-letter watch reads the dead-letter topic in a group of its own and
commits a position only once every alert of the records before it has an outcome in the delivery log
(`Progress`, as the change consumer); a restart resumes there, and an alert already told is not sent
again (its id is derived from the records). The lag watch samples the topic's end and the projector's
applied positions every `interval` and lets `LagAlarm` decide: one "high", then one "recovered".
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from services.notifier.alerting import AlertTeller
from services.notifier.alerts import DeadLetterSeen, LagAlarm, LagClock, PartitionLag, dead_letter_alert
from services.notifier.positions import PositionsUnavailable
from services.notifier.progress import Progress

__all__ = ["DeadLetterWatch", "LagWatch"]

log = logging.getLogger(__name__)
POLL_MS = 500
MAX_RECORDS = 500  # at most one alert per this many dead letters of a partition


class DeadLetterWatch:
    def __init__(
        self,
        consumer: AIOKafkaConsumer,
        *,
        topic: str,
        teller: AlertTeller,
        ready: Callable[[], bool],
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._consumer = consumer
        self._topic = topic
        self._teller = teller
        self._ready = ready
        self._now = now
        self._progress = Progress()

    async def run(self, stop: asyncio.Event) -> None:
        try:
            while not stop.is_set():
                if not self._ready():
                    await _pause(stop, 0.2)
                    continue
                try:
                    fetched = await self._consumer.getmany(timeout_ms=POLL_MS, max_records=MAX_RECORDS)
                except KafkaError as exc:
                    log.warning("reading the dead-letter topic %s failed: %r", self._topic, exc)
                    await _pause(stop, 1.0)
                    continue
                for tp, records in sorted(fetched.items(), key=lambda item: item[0].partition):
                    if records:
                        self._alert(tp.partition, records)
                await self._commit()
        finally:
            await self._commit()

    def _alert(self, partition: int, records: list[object]) -> None:
        letters = [DeadLetterSeen.of(partition, r.offset, r.headers) for r in records]  # type: ignore[attr-defined]
        waits = self._teller.tell(dead_letter_alert(letters, topic=self._topic, at=self._now()))
        for letter in letters[:-1]:
            self._progress.add(partition, letter.offset, ())
        self._progress.add(partition, letters[-1].offset, waits)

    async def _commit(self) -> None:
        positions = self._progress.committable()
        if not positions:
            return
        try:
            await self._consumer.commit({TopicPartition(self._topic, p): o for p, o in positions.items()})
        except KafkaError as exc:
            log.warning("commit of dead-letter positions %s failed: %r", positions, exc)


class LagWatch:
    def __init__(
        self,
        *,
        ends: Callable[[], Awaitable[dict[int, int]]],
        applied: Callable[[], Awaitable[dict[int, int]]],
        alarm: LagAlarm,
        teller: AlertTeller,
        ready: Callable[[], bool],
        interval: float,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._ends = ends
        self._applied = applied
        self._alarm = alarm
        self._teller = teller
        self._ready = ready
        self._interval = interval
        self._clock = clock
        self._now = now
        self._lag = LagClock()
        self.last: dict[int, PartitionLag] = {}  # the latest measure (the notifier's metrics show it)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self.tick()
            await _pause(stop, self._interval)

    async def tick(self) -> None:
        """Measure once, and tell what the alarm decides (only once the change consumer has caught up)."""
        try:
            ends = await self._ends()
            applied = await self._applied()
        except PositionsUnavailable as exc:
            log.warning("projector lag not measured: %s", exc)
            return
        self.last = self._lag.measure(ends, applied, self._clock())
        if not self._ready():
            return
        alert = self._alarm.judge(self.last, self._now())
        if alert is not None:
            self._teller.tell(alert)


async def _pause(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
