"""The notifier's consumer: its own group on the change topic, offsets committed after outcomes are recorded.

On every assignment each owned partition is read again from the beginning, folding only, up to the
group's committed offset (everything before it has an outcome in the delivery log); the fold then
knows every flag's kind and group. Past that offset, records wait until every owned partition has
caught up, then each change is matched, composed and handed to the dispatcher. A partition's offset
is committed up to the first record whose deliveries are not all recorded (`Progress`). A record
seen again after a restart is matched again, and the dispatcher skips each delivery whose outcome
the log already holds: nothing recorded is sent twice, nothing unrecorded is skipped.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError

from events import Envelope, EventError
from events.cloudevents import from_record
from services.notifier.alerting import AlertTeller
from services.notifier.alerts import kill_switch_alert
from services.notifier.deliveries import Delivery, compose
from services.notifier.directory import SubscriptionDirectory
from services.notifier.dispatcher import Dispatcher
from services.notifier.messages import audit_link
from services.notifier.notices import Notice, NoticeFeed
from services.notifier.progress import Progress
from services.notifier.subscriptions import Subscription, matches

__all__ = ["ChangeConsumer"]

log = logging.getLogger(__name__)
POLL_MS = 500
MAX_RECORDS = 500

Held = tuple[int, int, Envelope | None]  # partition, offset, the decoded change (None: not one)
Alarm = tuple[tuple[int, int], list[Delivery]]  # a record's (partition, offset), its alert's deliveries


class ChangeConsumer:
    def __init__(
        self,
        consumer: AIOKafkaConsumer,
        *,
        topic: str,
        dispatcher: Dispatcher,
        directory: SubscriptionDirectory,
        console_url: str,
        alerts: AlertTeller | None = None,
    ) -> None:
        self._consumer = consumer
        self._alerts = alerts
        self._topic = topic
        self._dispatcher = dispatcher
        self._directory = directory
        self._console_url = console_url
        self._feed = NoticeFeed()
        self._progress = Progress()
        self._resume: dict[int, int] = {}  # per owned partition: the committed offset, where delivery resumes
        self._behind: set[int] = set()  # owned partitions still folding up to their resume offset
        self._held: list[Held] = []  # past the resume offset while another partition is still behind
        self.assigned = asyncio.Event()

    def listener(self) -> ConsumerRebalanceListener:
        return _Rebalance(self)

    @property
    def caught_up(self) -> bool:
        """Partitions are assigned and each has been folded up to where delivery resumes (`/readyz`)."""
        return self.assigned.is_set() and not self._behind

    def lag(self) -> dict[int, int]:
        """Per owned partition: records on the topic past the committed position (not yet all delivered)."""
        lags = {}
        for partition, resume in self._resume.items():
            highwater = self._consumer.highwater(TopicPartition(self._topic, partition))
            if highwater is not None:
                committed = self._progress.committed(partition)
                lags[partition] = max(0, highwater - (resume if committed is None else committed))
        return lags

    async def run(self, stop: asyncio.Event, *, drain_seconds: float = 5.0) -> None:
        """Poll, fold, deliver and commit until `stop` is set; then give the deliveries under way
        `drain_seconds` to finish, and commit what is recorded."""
        try:
            while not stop.is_set():
                fetched = await self._consumer.getmany(timeout_ms=POLL_MS, max_records=MAX_RECORDS)
                await self._handle(fetched)
                await self._commit()
            deadline = asyncio.get_running_loop().time() + drain_seconds
            while self._progress.unfinished() and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.05)
                await self._commit()
        finally:
            await self._commit()

    async def _handle(self, fetched: dict[TopicPartition, list[Any]]) -> None:
        ready: list[Held] = []
        for tp, records in sorted(fetched.items(), key=lambda item: item[0].partition):
            for record in records:
                envelope = _decode(record)
                if record.offset < self._resume.get(tp.partition, 0):
                    if envelope is not None:  # delivered (or dead) before: fold only
                        self._feed.observe(envelope)
                        self._directory.observe(envelope)
                    continue
                ready.append((tp.partition, record.offset, envelope))
        if self._behind:
            await self._catch_up()
        if self._behind:
            self._held.extend(ready)
            return
        if self._held:
            ready, self._held = [*self._held, *ready], []
        if ready:
            await self._deliver(ready)

    async def _catch_up(self) -> None:
        for partition in list(self._behind):
            position = await self._consumer.position(TopicPartition(self._topic, partition))
            if position >= self._resume[partition]:
                self._behind.discard(partition)
        if not self._behind:
            log.info("caught up with the delivery log on partitions %s", sorted(self._resume))

    async def _deliver(self, ready: Sequence[Held]) -> None:
        told: dict[str, list[Notice]] = defaultdict(list)
        where: dict[Any, tuple[int, int]] = {}
        by_id: dict[str, Subscription] = {}
        alarms: list[Alarm] = []  # kill-switch alerts, to queue behind the changes
        for partition, offset, envelope in ready:
            if envelope is None or self._directory.observe(envelope):
                continue  # not a change, or a subscription's: it applies to the changes after it
            notice = self._feed.observe(envelope)
            if notice is None:
                continue
            where[notice.envelope.event_id] = (partition, offset)
            alarms.extend(self._kill_switch_alert(partition, offset, notice))
            for subscription in self._directory.current:
                if matches(subscription, notice):
                    told[subscription.id].append(notice)
                    by_id[subscription.id] = subscription  # as it was when it heard the first of them
        waits: dict[tuple[int, int], list[asyncio.Future[None]]] = defaultdict(list)
        for subscription_id, notices in told.items():
            for delivery in compose(by_id[subscription_id], notices, console_url=self._console_url):
                done = self._dispatcher.submit(delivery)
                for event_id in delivery.event_ids:
                    waits[where[event_id]].append(done)
        for position, alerts in alarms:  # the record's offset waits for its alert too
            waits[position].extend(self._dispatcher.submit(d) for d in alerts)
        for partition, offset, _ in ready:
            self._progress.add(partition, offset, waits.get((partition, offset), ()))

    def _kill_switch_alert(self, partition: int, offset: int, notice: Notice) -> list[Alarm]:
        """A kill switch's alert, to the subscriptions in force at that point of the log that opted in."""
        if self._alerts is None:
            return []
        alert = kill_switch_alert(notice, link=audit_link(self._console_url, notice))
        return [] if alert is None else [((partition, offset), self._alerts.deliveries(alert))]

    async def _commit(self) -> None:
        positions = self._progress.committable()
        if not positions:
            return
        try:
            await self._consumer.commit({TopicPartition(self._topic, p): o for p, o in positions.items()})
        except KafkaError as exc:  # a rebalance in progress: the next assignment starts from what was committed
            log.warning("commit of %s failed: %r", positions, exc)

    async def _assigned(self, assigned: set[TopicPartition]) -> None:
        self._feed = NoticeFeed()  # the fold is rebuilt from the beginning of every owned partition
        self._directory.reset()
        self._progress = Progress()
        self._held = []
        self._resume = {}
        for tp in assigned:
            committed = await self._consumer.committed(tp)
            self._resume[tp.partition] = committed or 0
        self._behind = {p for p, offset in self._resume.items() if offset > 0}
        if assigned:
            await self._consumer.seek_to_beginning(*assigned)
        log.info("assigned partitions, delivering from offsets %s", dict(sorted(self._resume.items())))
        self.assigned.set()

    async def _revoked(self, revoked: set[TopicPartition]) -> None:
        await self._commit()
        self._progress.forget(tp.partition for tp in revoked)


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, owner: ChangeConsumer) -> None:
        self._owner = owner

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._owner._revoked(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self._owner._assigned(assigned)


def _decode(record: Any) -> Envelope | None:
    try:
        return from_record(record.value, record.headers)
    except EventError as exc:
        log.warning("offset %s of partition %s is not a change (%s): skipped", record.offset, record.partition, exc)
        return None
