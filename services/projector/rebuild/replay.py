"""Replaying the topic into a schema as the projector role, with the projector's own planning and statements.

`FoldingProjector` folds batches in memory and writes them every `batch` records
with the offsets they cover, in the schema, so an interrupted replay resumes from
the last checkpoint. `replay_parallel` runs it in several processes, each owning
some partitions.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import multiprocessing
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from flaglog import DeadLetter, decode_fast
from flaglog.connection import client_options
from services.infra.kafka import topic_partitions
from services.infra.settings import Settings
from services.projector.cache_targets import CacheTarget
from services.projector.projection import FoldingProjector, Projector, RejectedByPostgres
from services.projector.rebuild.manual_gc import GC_THRESHOLDS, Collector
from services.projector.rebuild.progress import Bar
from services.projector.store import PostgresStore, create_projector_pool

log = logging.getLogger(__name__)

CHECKPOINT = 100_000  # records per transaction: folded in memory, written with their offsets
FETCH = 10_000  # records per Kafka fetch at most


class Unchanged:
    """The rebuild's dead-letter sink: the live projector already sent those records to the dead letters."""

    def __init__(self) -> None:
        self.count = 0

    async def publish(self, letters: Sequence[DeadLetter]) -> None:
        self.count += len(letters)


class NoInvalidation:
    """The rebuilt tables serve nobody until the switch; the cache describes the live ones."""

    async def invalidate(self, targets: Sequence[CacheTarget]) -> bool:
        return True


async def replay(
    settings: Settings,
    schema: str,
    *,
    until: Mapping[int, int] | None = None,
    partitions: Sequence[int] | None = None,
    batch: int = CHECKPOINT,
    stop_after: int | None = None,
    bar: bool = True,
    report: Callable[[int], None] | None = None,
) -> int:
    """Apply the topic (or some of its partitions) to `schema` from its stored offsets up to `until`.

    `until` defaults to the current end. Records are folded in memory (`FoldingProjector`)
    and written with their offsets every `batch` records, in one transaction each. Returns
    how many records were consumed; `report` is told each fetched batch's size.
    `stop_after` ends early (an interrupted run, in tests).

    Cyclic garbage is collected by hand (`Collector`) instead of by the automatic collector.
    """
    pool = await create_projector_pool(settings, schema=schema)
    # No CRC check of the record batches (check_crcs=False): the decoder verifies every event's own
    # SHA-256 over its exact bytes (a mismatch is a dead letter, as live) and compares the key and the
    # headers it reads with them, which catches any corruption of what the rebuild uses that a CRC would.
    consumer = AIOKafkaConsumer(
        **client_options(settings), enable_auto_commit=False, isolation_level="read_committed",
        max_partition_fetch_bytes=8 * 1024 * 1024, fetch_max_bytes=64 * 1024 * 1024, check_crcs=False,
    )  # fmt: skip
    await consumer.start()
    progress: Bar | None = None
    collector = Collector(every=batch)
    try:
        store = PostgresStore(pool, settings.projector_group)
        folder = FoldingProjector(PostgresStore(pool, settings.projector_group, new_history=True), Unchanged(),
                                  decode=decode_fast)  # fmt: skip
        fallback: Projector | None = None  # after Postgres refused a checkpoint: batch by batch, as live
        chosen = partitions if partitions is not None else await topic_partitions(settings, settings.topic)
        tps = [TopicPartition(settings.topic, p) for p in chosen]
        consumer.assign(tps)
        start = await store.stored_offsets(settings.topic)
        if until is None:
            until = {tp.partition: o for tp, o in (await consumer.end_offsets(tps)).items()}
        end = {tp.partition: until.get(tp.partition, 0) for tp in tps}
        for tp in tps:
            consumer.seek(tp, start.get(tp.partition, 0))
        remaining = {tp for tp in tps if start.get(tp.partition, 0) < end[tp.partition]}
        progress = Bar(sum(max(end[p] - start.get(p, 0), 0) for p in end)) if bar else None
        consumed = 0
        while remaining and (stop_after is None or consumed < stop_after):
            fetched = await consumer.getmany(*remaining, timeout_ms=500, max_records=min(batch, FETCH))
            records = [r for tp, rs in fetched.items() for r in rs if r.offset < end[tp.partition]]
            if records:
                if fallback is not None:
                    await fallback.handle(records)
                else:
                    await folder.add(records)
                consumed += len(records)
                if progress:
                    progress.add(len(records))
                if report:
                    report(len(records))
            for tp in list(remaining):
                if await consumer.position(tp) >= end[tp.partition]:
                    remaining.discard(tp)
            done = not remaining or (stop_after is not None and consumed >= stop_after)
            if fallback is None and (folder.pending >= batch or done):
                try:
                    await folder.checkpoint()
                except RejectedByPostgres as exc:
                    log.warning("Postgres refused a checkpoint (%s); going on batch by batch from the last one", exc)
                    fallback = Projector(store, Unchanged(), NoInvalidation(), retry_backoff=0.0, decode=decode_fast)
                    stored = await store.stored_offsets(settings.topic)
                    for tp in tps:
                        consumer.seek(tp, stored.get(tp.partition, 0))
                    remaining = {tp for tp in tps if stored.get(tp.partition, 0) < end[tp.partition]}
            collector.consumed(len(records))  # after a checkpoint: what it wrote is garbage already
        return consumed
    finally:
        if progress:
            progress.finish()
        await consumer.stop()
        await pool.close()
        collector.stop()


async def replay_parallel(settings: Settings, schema: str, *, workers: int, batch: int, bar: bool = True) -> int:
    """`replay` in `workers` processes, each owning some partitions, up to the end as of now.

    Partitions are independent (a stream lives on one, with its org), each worker's offsets
    are its own rows, and Python decoding is the bottleneck: processes use every core.
    """
    partitions = await topic_partitions(settings, settings.topic)
    groups = [g for g in (partitions[i::workers] for i in range(workers)) if g]
    end = await end_offsets(settings, partitions)
    pool = await create_projector_pool(settings, schema=schema)
    try:
        start = await PostgresStore(pool, settings.projector_group).stored_offsets(settings.topic)
    finally:
        await pool.close()
    ctx = multiprocessing.get_context("spawn")
    counters = [ctx.Value("q", 0) for _ in groups]
    procs = [
        ctx.Process(target=_worker, args=(settings, schema, group, end, batch, counter), daemon=True)
        for group, counter in zip(groups, counters, strict=True)
    ]
    for proc in procs:
        proc.start()
    progress = Bar(sum(max(o - start.get(p, 0), 0) for p, o in end.items())) if bar else None
    shown = 0
    try:
        while any(proc.is_alive() for proc in procs):
            await asyncio.sleep(0.2)
            done = sum(c.value for c in counters)
            if progress:
                progress.add(done - shown)
            shown = done
    finally:
        for proc in procs:
            proc.join()
        if progress:
            progress.add(sum(c.value for c in counters) - shown)
            progress.finish()
    failed = [p.exitcode for p in procs if p.exitcode != 0]
    if failed:
        raise RuntimeError(f"{len(failed)} rebuild workers failed (exit codes {failed}); run again to resume")
    return sum(c.value for c in counters)


def _worker(
    settings: Settings, schema: str, partitions: list[int], end: dict[int, int], batch: int, counter: Any
) -> None:
    """A spawned process's whole life: replay its partitions, counting into the shared `counter`."""

    def report(n: int) -> None:
        with counter.get_lock():
            counter.value += n

    logging.basicConfig(level=logging.WARNING)
    gc.set_threshold(*GC_THRESHOLDS)
    asyncio.run(replay(settings, schema, until=end, partitions=partitions, batch=batch, bar=False, report=report))


async def end_offsets(settings: Settings, partitions: Sequence[int]) -> dict[int, int]:
    consumer = AIOKafkaConsumer(**client_options(settings), isolation_level="read_committed")
    await consumer.start()
    try:
        ends = await consumer.end_offsets([TopicPartition(settings.topic, p) for p in partitions])
        return {tp.partition: o for tp, o in ends.items()}
    finally:
        await consumer.stop()
