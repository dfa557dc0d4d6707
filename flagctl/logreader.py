"""Reading the whole change topic, for `flagctl audit verify`: every partition, offset 0 to the end.

The end is fixed when reading starts (the end offsets then), so a log that
keeps growing still gives a definite answer about what it held at that moment.
No consumer group is used and nothing is committed: reading changes nothing.
Connection settings (bootstrap, SASL, TLS) are the services' `FLAGS_KAFKA_*`.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TextIO

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from flaglog.connection import KafkaConnection, client_options
from flaglog.progress import ProgressLine
from flaglog.verification import LogRecord
from services.infra.kafka import topic_partitions

__all__ = ["LogUnavailable", "Progress", "TopicExtent", "read_topic"]

STALL_SECONDS = 30.0


class LogUnavailable(Exception):
    """The topic cannot be read (no such topic, broker unreachable, stalled); `str()` says why."""


@dataclass(frozen=True, slots=True)
class TopicExtent:
    """What was read: per partition, the first offset still held and the end offset when reading began."""

    topic: str
    start: dict[int, int]
    end: dict[int, int]

    @property
    def total(self) -> int:
        return sum(self.end[p] - self.start[p] for p in self.end)

    @property
    def truncated(self) -> dict[int, int]:
        """Partitions whose first records are gone (deleted by retention, or by someone): partition → first offset."""
        return {p: o for p, o in self.start.items() if o > 0}


class Progress:
    """"reading the log: done/total": one line on a terminal, a line every few seconds elsewhere (None: silent)."""

    def __init__(self, out: TextIO | None = sys.stderr, *, every: float = 0.2) -> None:
        self._line = ProgressLine(out, every=every)
        self._began = time.monotonic()

    def __call__(self, done: int, total: int, *, final: bool = False) -> None:
        if not (final or self._line.due()):
            return
        rate = done / max(time.monotonic() - self._began, 1e-6)
        share = f"{100 * done / total:5.1f}%" if total else "100.0%"
        self._line.show(f"reading the log: {done}/{total} records {share}  {rate:,.0f}/s", force=final)
        if final:
            self._line.end()


async def read_topic(
    settings: KafkaConnection,
    topic: str,
    on_record: Callable[[LogRecord], None],
    *,
    progress: Callable[..., None] | None = None,
) -> TopicExtent:
    """Call `on_record` for every record of `topic`, each partition in offset order, up to the end offsets at start."""
    consumer = AIOKafkaConsumer(
        **client_options(settings), enable_auto_commit=False, auto_offset_reset="earliest", max_poll_records=2000
    )
    try:
        partitions = [TopicPartition(topic, p) for p in await _known_partitions(settings, topic)]
        await consumer.start()
        consumer.assign(partitions)
        start = await consumer.beginning_offsets(partitions)
        end = await consumer.end_offsets(partitions)
        extent = TopicExtent(
            topic, {tp.partition: start[tp] for tp in partitions}, {tp.partition: end[tp] for tp in partitions}
        )
        for tp in partitions:
            consumer.seek(tp, start[tp])
        await _drain(consumer, partitions, end, on_record, extent.total, progress)
        return extent
    except KafkaError as exc:
        raise LogUnavailable(f"cannot read topic {topic!r}: {exc.__class__.__name__}: {exc}") from exc
    finally:
        await consumer.stop()


async def _drain(
    consumer: AIOKafkaConsumer,
    partitions: list[TopicPartition],
    end: dict[TopicPartition, int],
    on_record: Callable[[LogRecord], None],
    total: int,
    progress: Callable[..., None] | None,
) -> None:
    done = 0
    pending = [tp for tp in partitions if await consumer.position(tp) < end[tp]]
    last_progress = time.monotonic()
    while pending:
        batch = await consumer.getmany(*pending, timeout_ms=500)
        for tp, records in batch.items():
            for r in records:
                if r.offset >= end[tp]:
                    break  # written after reading began: not part of this verification
                on_record(LogRecord(tp.partition, r.offset, r.key, r.value, tuple(r.headers)))
                done += 1
        if batch:
            last_progress = time.monotonic()
        elif time.monotonic() - last_progress > STALL_SECONDS:
            raise LogUnavailable(f"no records for {STALL_SECONDS:.0f} s with {total - done} still to read")
        if progress is not None:
            progress(done, total)
        pending = [tp for tp in pending if await consumer.position(tp) < end[tp]]
    if progress is not None:
        progress(done, total, final=True)


async def _known_partitions(settings: KafkaConnection, topic: str) -> list[int]:
    partitions = await topic_partitions(settings, topic)
    if not partitions:
        raise LogUnavailable(f"no topic {topic!r} on {settings.kafka_bootstrap}")
    return partitions
