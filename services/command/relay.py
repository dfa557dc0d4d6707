"""The outbox relay: publishes accepted events to Kafka in sequence order, then stamps them.

One asyncio task per process, and one active relay per database: leadership is
a session advisory lock on a dedicated connection, which also LISTENs on
`flags_outbox` (with a 1 s poll as a fallback for a lost notification). A row
is marked published only after Kafka acknowledged it (acks=all, idempotent
producer), so a crash or an outage never loses one. Nor does it send one twice:
a record Kafka wrote whose acknowledgement was lost stays unmarked, and a new
producer (a new leader, or the same relay after an outage) has a new producer id
that Kafka's idempotence cannot match, so before a new producer's first send the
relay reads the end of every partition (`PublishedLog`) and marks, rather than
sends, what the topic already holds. While Kafka is down the rows wait
in Postgres, the API keeps accepting changes, and the relay logs the outage
once, backs off from 0.1 s to 5 s, and catches up when the broker returns.
A row appended under a trace (its `traceparent`, migration 0014) is sent in a producer span of
that trace, whose context its record's headers carry (`events.cloudevents.to_record`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from aiokafka.errors import KafkaError

from events import Envelope, decode, to_record
from services.command.errors import KafkaUnavailable, StoreUnavailable
from services.command.ports import EventStore, Producer, PublishedLog, RelayLease, StoredEvent
from services.observability import tracing

log = logging.getLogger(__name__)

BATCH_SIZE = 500


class _Backoff:
    def __init__(self, first: float, cap: float) -> None:
        self.first, self.cap, self.current = first, cap, first

    def next(self) -> float:
        delay, self.current = self.current, min(self.current * 2, self.cap)
        return delay

    def reset(self) -> None:
        self.current = self.first


class _Outage:
    """Logs one warning when a dependency goes down and one line when it is back."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.since: float | None = None
        self.failures = 0

    @property
    def down(self) -> bool:
        return self.since is not None

    def failed(self, exc: BaseException) -> None:
        self.failures += 1
        if self.since is None:
            self.since = time.monotonic()
            log.warning("relay: %s unavailable, events stay queued in Postgres: %s", self.name, str(exc) or repr(exc))
        else:
            log.debug("relay: %s still unavailable (%d failures): %s", self.name, self.failures, exc)

    def recovered(self) -> None:
        if self.since is not None:
            log.info(
                "relay: %s available again after %.1f s (%d failed attempts)",
                self.name,
                time.monotonic() - self.since,
                self.failures,
            )
        self.since, self.failures = None, 0


class Relay:
    def __init__(
        self,
        store: EventStore,
        producer_factory: Callable[[], Producer],
        *,
        topic: str,
        prepare: Callable[[], Awaitable[None]] | None = None,
        published: PublishedLog | None = None,
        probe: Callable[[Producer], Awaitable[None]] | None = None,
        batch_size: int = BATCH_SIZE,
        poll_interval: float = 1.0,
        standby_interval: float = 2.0,
        min_backoff: float = 0.1,
        max_backoff: float = 5.0,
        send_timeout: float = 5.0,
        abandon_after: float = 120.0,
        probe_interval: float = 2.0,
        probe_timeout: float = 3.0,
    ) -> None:
        """`probe` asks the cluster something over the producer's connection (services.infra.kafka.probe);
        a batch not acknowledged within `send_timeout` reports Kafka down, and is given up after `abandon_after`."""
        self._store = store
        self._producer_factory = producer_factory
        self._topic = topic
        self._prepare = prepare
        self._prepared = prepare is None
        self._published = published
        self._probe = probe
        self._send_timeout = send_timeout
        self._abandon_after = abandon_after
        self._probe_interval = probe_interval
        self._probe_timeout = probe_timeout
        self._contacted = -math.inf  # monotonic time the cluster last answered
        self._settled = False  # the current producer checked the topic's end before its first send
        self._batch_size = batch_size
        self._poll_interval = poll_interval
        self._standby_interval = standby_interval
        self._backoff = (min_backoff, max_backoff)
        self._producer: Producer | None = None
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._kafka = _Outage("Kafka")
        self._postgres = _Outage("PostgreSQL")
        self.is_leader = False
        self.published_total = 0
        self.found_published_total = 0  # unmarked events found already in the topic, marked without a re-send
        self.published_at: float | None = None  # seconds since the epoch of the last events marked published

    # --- lifecycle ---------------------------------------------------------------

    async def start(self) -> None:
        if self._task is None:
            self._stopping.clear()
            self._task = asyncio.create_task(self._run(), name="outbox-relay")

    async def stop(self, timeout: float = 15.0) -> None:
        """Finish the batch in flight (so nothing acknowledged is left unmarked), then stop."""
        if self._task is None:
            return
        self._stopping.set()
        self._wake.set()
        try:
            await asyncio.wait_for(asyncio.shield(self._task), timeout)
        except TimeoutError:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        finally:
            self._task = None
            await self._close_producer()

    async def lag(self) -> int:
        """Events accepted but not yet acknowledged by Kafka."""
        return await self._store.count_unpublished()

    def status(self) -> dict[str, Any]:
        return {
            "running": self._task is not None and not self._task.done(),
            "leader": self.is_leader,
            "kafka": "down" if self._kafka.down else "ok",
            "published_total": self.published_total,
            "found_published_total": self.found_published_total,
            "published_at": self.published_at,
        }

    # --- the loop ----------------------------------------------------------------

    async def _run(self) -> None:
        backoff = _Backoff(*self._backoff)
        while not self._stopping.is_set():
            lease: RelayLease | None = None
            try:
                lease = await self._store.acquire_relay_lease(self._wake.set)
                self._postgres.recovered()
                if lease is None:
                    await self._sleep(self._standby_interval)
                    continue
                self.is_leader = True
                log.info("relay: leading, publishing to %s", self._topic)
                await self._lead(lease)
                backoff.reset()
            except StoreUnavailable as exc:
                self._postgres.failed(exc)
                await self._sleep(backoff.next())
            except Exception:
                log.exception("relay: unexpected error; retrying")
                await self._sleep(backoff.next())
            finally:
                if self.is_leader:
                    log.info("relay: no longer leading")
                self.is_leader = False
                if lease is not None:
                    await lease.release()

    async def _lead(self, lease: RelayLease) -> None:
        backoff = _Backoff(*self._backoff)
        while not self._stopping.is_set():
            if not lease.alive:
                raise StoreUnavailable("the relay's lock connection was lost")
            self._wake.clear()
            try:
                published = await self.publish_batch()
                if published == 0:
                    await self._check_broker()
            except KafkaUnavailable as exc:
                self._kafka.failed(exc.__cause__ or exc)
                await self._close_producer()
                await self._sleep(backoff.next())
                continue
            backoff.reset()
            if published < self._batch_size:
                await self._wait_for_wake()

    async def publish_batch(self) -> int:
        """Publish the oldest unpublished events (up to one batch); returns how many are now marked published.

        Rows are marked in sequence order up to the first failure only, so a
        retry re-sends from there and never reorders a stream.
        """
        rows = await self._store.unpublished(self._batch_size)
        if not rows:
            return 0
        producer = await self._ready_producer()
        envelopes = [(row, decode(row.body)) for row in rows]
        if not self._settled:
            envelopes = await self._settle(envelopes)
        futures: list[asyncio.Future[Any]] = []
        error: BaseException | None = None
        sent = [row for row, _ in envelopes]
        traced = _Traced(self._topic)
        try:
            for place, (row, envelope) in enumerate(envelopes):
                traceparent = None if row.traceparent is None else traced.publishing(place, row, envelope)
                record = to_record(envelope, value=row.body, traceparent=traceparent)
                futures.append(
                    await producer.send(self._topic, value=record.value, key=record.key, headers=record.headers)
                )
        except (KafkaError, OSError) as exc:
            error = exc
        if futures:
            await self._outcome(asyncio.gather(*futures, return_exceptions=True))
        delivered = 0
        for future in futures:
            failure = _failure(future)
            if failure is not None:
                error = error or failure
                break
            delivered += 1
        try:
            await self._mark(sent[:delivered])
        finally:
            traced.ended(delivered, error)
        if error is not None:
            raise KafkaUnavailable(f"{delivered}/{len(sent)} delivered: {error!r}") from error
        self._contact()
        return len(rows) - len(sent) + delivered

    async def _outcome(self, sends: asyncio.Future[Any]) -> None:
        """Wait for the sends' acknowledgements (or failures), saying within `send_timeout` that Kafka is down.

        A broker that took the requests and does not answer (paused, partitioned) is an outage, reported at
        once; but the sends stay this producer's, which retries them under its own id and sequence numbers so
        that the broker writes each once. A new producer would send them again under another id while the
        broker may still write the first copies: a second copy in the log. Only after `abandon_after` does the
        relay give them up (and settle what the topic holds before sending again).
        """
        try:
            await asyncio.wait_for(asyncio.shield(sends), self._send_timeout)
            return
        except TimeoutError:
            self._kafka.failed(TimeoutError(f"no acknowledgement within {self._send_timeout:g} s"))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(sends), self._abandon_after)

    async def _check_broker(self) -> None:
        """While idle, ask the cluster for its metadata every `probe_interval`: an outage shows within seconds
        (in `status()`, `/readyz`, the metrics and the log) even when nothing is being published."""
        if self._probe is None or time.monotonic() - self._contacted < self._probe_interval:
            return
        producer = await self._ready_producer()
        try:
            await asyncio.wait_for(self._probe(producer), self._probe_timeout)
        except (KafkaError, OSError, TimeoutError) as exc:
            raise KafkaUnavailable(f"the cluster does not answer: {exc!r}") from exc
        self._contact()

    def _contact(self) -> None:
        self._contacted = time.monotonic()
        self._kafka.recovered()

    async def _settle(self, envelopes: list[tuple[StoredEvent, Envelope]]) -> list[tuple[StoredEvent, Envelope]]:
        """Mark the events the topic already holds (sent by a producer that never saw them acknowledged).

        Those are among the oldest unpublished rows, and each is among the last two batches of its partition:
        only the batch in flight when the previous producer stopped can have been written unacknowledged, and
        nothing is sent after it until this check ran. Returns the rest, to send.
        """
        if self._published is not None:
            try:
                held = await self._published.recent_event_ids(2 * self._batch_size)
            except (KafkaError, OSError, TimeoutError) as exc:
                raise KafkaUnavailable(f"cannot read the topic's end: {exc!r}") from exc
            found = [row for row, envelope in envelopes if str(envelope.event_id) in held]
            if found:
                await self._store.mark_published([row.sequence for row in found])
                self.found_published_total += len(found)
                log.warning(
                    "relay: %d events were in Kafka already but not marked (a crash or an outage between Kafka's "
                    "acknowledgement and the mark); marked, not sent again",
                    len(found),
                )
                envelopes = [(row, envelope) for row, envelope in envelopes if str(envelope.event_id) not in held]
        self._settled = True
        return envelopes

    async def _mark(self, rows: Sequence[StoredEvent]) -> None:
        if rows:
            await self._store.mark_published([r.sequence for r in rows])
            self.published_total += len(rows)
            self.published_at = time.time()
            log.debug("relay: published %d events up to sequence %d", len(rows), rows[-1].sequence)

    async def _ready_producer(self) -> Producer:
        if self._producer is not None:
            return self._producer
        try:
            if not self._prepared:
                assert self._prepare is not None
                await asyncio.wait_for(self._prepare(), timeout=30)
                self._prepared = True
            producer = self._producer_factory()
            try:
                await producer.start()
            except BaseException:
                await _stop_quietly(producer)
                raise
        except (KafkaError, OSError, TimeoutError, RuntimeError) as exc:
            raise KafkaUnavailable(f"cannot connect: {exc!r}") from exc
        self._producer = producer
        self._settled = False
        return producer

    async def _close_producer(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            await _stop_quietly(producer)

    async def _wait_for_wake(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), self._poll_interval)

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)


class _Traced:
    """The traced events of one batch: a producer span each, continuing the trace stored with the row.

    The record carries the span's traceparent (with tracing off, the stored one, passed on); the span
    ends when Kafka acknowledged the record or the batch failed, and a published event is logged with
    its event and trace ids. Untraced rows cost nothing here.
    """

    __slots__ = ("_events", "_topic")

    def __init__(self, topic: str) -> None:
        self._topic = topic
        self._events: list[tuple[int, str, str, tracing.OpenSpan | None]] = []  # (place, event id, traceparent, span)

    def publishing(self, place: int, row: StoredEvent, envelope: Envelope) -> str | None:
        """The traceparent for the record of the batch's `place`-th row (None: the row was not traced)."""
        parent = tracing.valid_traceparent(row.traceparent)
        if parent is None:
            return None
        event_id = str(envelope.event_id)
        attributes = {"messaging.system": "kafka", "messaging.destination.name": self._topic, "event_id": event_id}
        span = tracing.start_span(f"publish {self._topic}", parent=parent, attributes=attributes, kind="producer")
        traceparent = parent if span is None else span.traceparent
        self._events.append((place, event_id, traceparent, span))
        return traceparent

    def ended(self, delivered: int, error: BaseException | None) -> None:
        """The batch's first `delivered` records were acknowledged; the others failed with `error`."""
        for place, event_id, traceparent, span in self._events:
            ok = place < delivered
            if span is not None:
                span.end(None if ok else error or KafkaUnavailable("not delivered"))
            if ok:
                ids = {"event_id": event_id, "trace_id": tracing.trace_id_of(traceparent)}
                if span is not None:
                    ids["span_id"] = span.span_id
                log.info("relay: published event %s", event_id, extra=ids)


def _failure(future: asyncio.Future[Any]) -> BaseException | None:
    """Why a send was not acknowledged (None: it was)."""
    if not future.done():
        return TimeoutError("not acknowledged in time")
    if future.cancelled():
        return asyncio.CancelledError("cancelled")
    return future.exception()


async def _stop_quietly(producer: Producer) -> None:
    try:
        await asyncio.wait_for(producer.stop(), timeout=10)
    except Exception as exc:  # a producer that cannot even stop cleanly is simply dropped
        log.debug("relay: producer stop failed: %r", exc)
