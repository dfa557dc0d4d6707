"""Rebuild throughput: N events (default 1,000,000) from a topic of the bench's own, end to end into Postgres.

    .venv/bin/python -m bench.rebuild [--events 1000000] [--batch 100000] [--workers 2] [--partitions 6]

Target: >= 20,000 events/s, measured from the start of
`services.projector.rebuild.operation.rebuild` (schema creation, consumer start) to the
switch-over committed. The events are sealed here without pydantic (the
canonical JSON and its SHA-256 written directly; a sample is decoded with
`events.decode` to prove them sound) and produced straight onto the topic.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import hashlib
import json
import random
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import orjson
from aiokafka import AIOKafkaProducer

from bench.harness import Progress, drop_database, isolated_settings
from bench.plots import bar_plot
from events import (
    GENESIS_HASH,
    FlagDefined,
    Level,
    OrgOverrideSet,
    Platform,
    PlatformOverrideSet,
    RolloutPercentageSet,
    SystemDefaultSet,
    UserOverrideSet,
    decode,
    to_record,
)
from events.cloudevents import CONTENT_TYPE, SOURCE, SPEC_VERSION, TYPE_PREFIX
from flagcore import SEED_FLAGS, transition
from flaglog.connection import client_options
from services.infra.settings import Settings
from services.projector.rebuild.manual_gc import GC_THRESHOLDS
from services.projector.rebuild.operation import rebuild
from services.projector.rebuild.replay import CHECKPOINT
from tests.support.factories import LogBuilder

TARGET = 20_000
RESULTS = Path(__file__).parent / "results"
PLATFORMS = tuple(Platform)
T0 = datetime(2026, 1, 1, tzinfo=UTC)


class Event:
    """One sealed event as the command store keeps it: the canonical bytes and what a record needs."""

    __slots__ = ("body", "event_id", "flag_key", "hash", "key", "occurred_at", "org_id", "schema_version",
                 "sequence", "stream", "type", "version")  # fmt: skip

    def __init__(self, fields: dict[str, Any], body: bytes) -> None:
        self.body = body
        self.key = (fields["org_id"] or "_system").encode()
        for name in ("event_id", "type", "schema_version", "stream", "version", "sequence", "org_id",
                     "flag_key", "hash"):  # fmt: skip
            setattr(self, name, fields[name])
        self.occurred_at = fields["occurred_at"]

    def headers(self) -> list[tuple[str, bytes]]:
        """The CloudEvents headers `events.to_record` writes."""
        return [
            ("ce_specversion", SPEC_VERSION.encode()),
            ("ce_id", self.event_id.encode()),
            ("ce_source", SOURCE.encode()),
            ("ce_type", f"{TYPE_PREFIX}{self.type}.v{self.schema_version}".encode()),
            ("ce_time", self.occurred_at.encode()),
            ("ce_subject", self.stream.encode()),
            ("ce_streamversion", str(self.version).encode()),
            ("ce_sequence", str(self.sequence).encode()),
            ("ce_partitionkey", self.key),
            ("content-type", CONTENT_TYPE.encode()),
        ]


def fast_log(n: int, *, orgs: int = 500, users: int = 200, seed: int = 7, after: int = 0) -> Iterator[Event]:
    """The catalogue (sealed by the real code), then `n` minus that many overrides and rollouts.

    Sequences start after `after` (the events a fresh database already holds).

    Each event's `new` comes from `flagcore.transition`, so the projector's checks hold.
    """
    rnd = random.Random(seed)
    catalog = LogBuilder(start=T0)
    catalog.sequence = after
    for flag in SEED_FLAGS:
        catalog.append(FlagDefined(flag_key=flag.key, group=flag.group, kind=flag.kind, owner=flag.owner))
        catalog.append(SystemDefaultSet(flag_key=flag.key, enabled=flag.default_on))
    for envelope in catalog.events:
        fields = envelope.model_dump(mode="json")
        yield Event(fields, envelope.to_json())
    heads: dict[str, tuple[int, str, dict[str, Any] | None]] = {}
    keys = [f.key for f in SEED_FLAGS]
    org_ids = [f"org-{i:04d}" for i in range(orgs)]
    actor = {"id": "key:bench", "name": "bench"}
    sequence = after + len(catalog.events)
    clock = T0 + timedelta(days=1)
    while sequence < after + n:
        key, org, roll = rnd.choice(keys), rnd.choice(org_ids), rnd.random()
        if roll < 0.4:
            change: Any = OrgOverrideSet.model_construct(flag_key=key, org_id=org, enabled=rnd.random() < 0.5)
        elif roll < 0.6:
            change = PlatformOverrideSet.model_construct(
                flag_key=key, org_id=org, platform=rnd.choice(PLATFORMS), enabled=rnd.random() < 0.5
            )
        elif roll < 0.85:
            change = UserOverrideSet.model_construct(
                flag_key=key, org_id=org, user_id=f"u{rnd.randrange(users)}", enabled=rnd.random() < 0.5
            )
        else:
            change = RolloutPercentageSet.model_construct(
                flag_key=key, level=Level.ORG, org_id=org, platform=None, user_id=None, percentage=rnd.randrange(101)
            )
        stream = _stream(change)
        version, prev_hash, previous = heads.get(stream, (0, GENESIS_HASH, None))
        new = transition(previous, change)
        if version and new == previous:
            continue
        sequence += 1
        clock += timedelta(milliseconds=37)
        fields = {
            "actor": actor,
            "data": change.model_dump(mode="json"),
            "event_id": str(uuid.UUID(int=rnd.getrandbits(128), version=4)),
            "flag_key": key,
            "new": new,
            "occurred_at": clock.isoformat().replace("+00:00", "Z"),
            "org_id": org,
            "prev_hash": prev_hash,
            "previous": previous,
            "reason": "bench",
            "schema_version": change.SCHEMA_VERSION,
            "sequence": sequence,
            "stream": stream,
            "type": change.type,
            "version": version + 1,
        }
        fields["hash"] = hashlib.sha256(orjson.dumps(fields, option=orjson.OPT_SORT_KEYS)).hexdigest()
        heads[stream] = (version + 1, fields["hash"], new)
        yield Event(fields, orjson.dumps(fields, option=orjson.OPT_SORT_KEYS))


def _stream(change: Any) -> str:
    if isinstance(change, OrgOverrideSet | RolloutPercentageSet):
        return f"org/{change.org_id}/flag/{change.flag_key}"
    if isinstance(change, PlatformOverrideSet):
        return f"org/{change.org_id}/platform/{change.platform}/flag/{change.flag_key}"
    return f"org/{change.org_id}/user/{change.user_id}/flag/{change.flag_key}"


def prove_sound(e: Event) -> None:
    """The fast sealing must give what the real code accepts: the same bytes, hash and record."""
    envelope = decode(e.body)
    assert envelope.hash == e.hash and envelope.to_json() == e.body, "fast sealing is not canonical"
    assert to_record(envelope).headers == e.headers()


async def produce(settings: Settings, events: Iterator[Event], total: int) -> float:
    """Seal and send as they come (a million events would not fit in memory twice); every 5,000th is proved."""
    producer = AIOKafkaProducer(
        **client_options(settings), enable_idempotence=True, acks="all", linger_ms=20, max_batch_size=1024 * 1024
    )
    await producer.start()
    progress = Progress("seal and produce", total)
    started = time.monotonic()
    try:
        pending = []
        for i, e in enumerate(events, 1):
            if i % 5000 == 1:
                prove_sound(e)
            pending.append(await producer.send(settings.topic, e.body, key=e.key, headers=e.headers()))
            if i % 20_000 == 0:
                await asyncio.gather(*pending)
                pending.clear()
                progress.update(i)
        await asyncio.gather(*pending)
        progress.update(total)
    finally:
        progress.finish()
        await producer.stop()
    return time.monotonic() - started


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=CHECKPOINT, help="records per rebuild transaction")
    parser.add_argument("--workers", type=int, default=2, help="rebuild processes (the machine has 2 cores)")
    parser.add_argument("--partitions", type=int, default=6, help="partitions of the bench's topic")
    args = parser.parse_args()

    settings = await isolated_settings("rebuild", topic_partitions=args.partitions)
    gc.set_threshold(*GC_THRESHOLDS)  # what the rebuild's own entry points set
    try:
        n = args.events
        produced = await produce(settings, fast_log(n), n)
        print(f"sealed and produced {n:,} events onto {settings.topic} in {produced:.1f}s ({n / produced:,.0f}/s)")

        started = time.monotonic()
        await rebuild(settings, "rebuild_bench", switch=True, batch=args.batch, workers=args.workers)
        elapsed = time.monotonic() - started

        admin = await asyncpg.connect(settings.pg_admin_url.rsplit("/", 1)[0] + f"/{settings.pg_database}")
        try:
            offsets = await admin.fetchval("SELECT coalesce(sum(next_offset), 0) FROM public.projector_offsets")
            history = await admin.fetchval("SELECT count(*) FROM public.flag_history")
        finally:
            await admin.close()
        rate = n / elapsed
        verdict = "meets" if rate >= TARGET else "MISSES"
        print(
            f"rebuild: {n:,} events in {elapsed:.1f}s = {rate:,.0f} events/s ({verdict} the {TARGET:,}/s "
            f"target), batch {args.batch:,}, {args.workers} workers over {args.partitions} partitions; "
            f"offsets covered {offsets:,}, flag_history rows {history:,}"
        )
        RESULTS.mkdir(exist_ok=True)
        figures = {"events": n, "seconds": elapsed, "events_per_second": rate, "batch": args.batch,
                   "workers": args.workers, "partitions": args.partitions, "target": TARGET,
                   "history_rows": history}  # fmt: skip
        (RESULTS / "rebuild.json").write_text(json.dumps(figures, indent=2))
        bar_plot(
            {f"rebuild (end to end, {args.workers} workers)": rate, "target": TARGET},
            RESULTS / "rebuild.png",
            title=f"Rebuild, {n:,} events, topic to Postgres (shared, loaded 2 cores)",
            unit="events/s",
        )
    finally:
        await drop_database(settings)


if __name__ == "__main__":
    asyncio.run(main())
