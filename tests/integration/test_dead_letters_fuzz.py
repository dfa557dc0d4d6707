"""Hypothesis-made garbage on a real topic: the projector dead-letters all of it and keeps going.

Fifty bad records, every kind of `tests.support.garbage.bad_records()` about equally (random
bytes, random JSON, changed or resealed events, wrong keys, wrong or non-UTF-8
headers, tombstones) are produced to a fresh topic between a few sound events,
and the projector runs as its own process. Every bad record must arrive on the
dead-letter topic, found by its partition and `dlq_offset`, unchanged and with a
reason; the sound events must reach the read models; the projector must still
be running at the end.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.strategies import SearchStrategy

from services.infra.settings import Role, Settings
from tests.support.eventlog import EventLog
from tests.support.garbage import BAD_KINDS, GarbageRecord
from tests.support.kafka import read_topic
from tests.support.processes import ServiceProcess
from tests.support.projection import tenant_rows, wait_for_offsets

pytestmark = pytest.mark.integration

BAD = 50
ORG = "dlq-fuzz-org"


def draw_bad_records(count: int) -> list[GarbageRecord]:
    """`count` distinct bad records, every kind about equally, drawn by Hypothesis (`.example()` is for the REPL)."""
    per_kind = -(-count // len(BAD_KINDS))
    kinds = [_draw(kind(), per_kind) for kind in BAD_KINDS]
    mixed = [record for batch in itertools.zip_longest(*kinds) for record in batch if record is not None]
    return mixed[:count]


def _draw(strategy: SearchStrategy[GarbageRecord], count: int) -> list[GarbageRecord]:
    drawn: dict[tuple[object, ...], GarbageRecord] = {}

    @settings(
        max_examples=count * 5,
        database=None,
        phases=[Phase.generate],
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def collect(record: GarbageRecord) -> None:
        if len(drawn) < count:
            drawn.setdefault((record.key, record.value, record.headers), record)

    collect()
    assert len(drawn) == count, f"only {len(drawn)} distinct records drawn"
    return list(drawn.values())


async def produce(settings: Settings, records: list[GarbageRecord]) -> list[tuple[int, int]]:
    """Send in order, wait for every ack; (partition, offset) of each record."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, enable_idempotence=True, acks="all")
    await producer.start()
    try:
        sent = [await producer.send(settings.topic, key=r.key, value=r.value, headers=list(r.headers)) for r in records]
        return [(m.partition, m.offset) for m in await asyncio.gather(*sent)]
    finally:
        await producer.stop()


def test_every_bad_record_is_dead_lettered_and_the_sound_ones_apply(
    make_settings: Callable[[], Settings], tmp_path: Path
) -> None:
    settings = make_settings()
    log = EventLog()
    log.define("dlq.fuzz")
    log.org(ORG, "dlq.fuzz", True)
    log.user(ORG, "u-1", "dlq.fuzz", True)
    log.org(ORG, "dlq.fuzz", False)
    sound = [GarbageRecord(settings.topic, 0, 0, r.key, r.value, tuple(r.headers)) for r in log.records()]
    bad = draw_bad_records(BAD)
    records: list[GarbageRecord] = list(bad)
    for i, record in reversed(list(enumerate(sound))):  # in order, spread among the garbage
        records.insert((i + 1) * BAD // (len(sound) + 1), record)
    assert len(records) == BAD + len(sound)

    placed = asyncio.run(produce(settings, records))
    where = dict(zip(placed, records, strict=True))

    projector = ServiceProcess("projector", settings, tmp_path).start()
    try:
        asyncio.run(wait_for_offsets(settings, len(records), timeout=60))
        letters = asyncio.run(read_topic(settings, settings.dead_letter_topic, BAD, timeout=30))
        assert projector.proc is not None and projector.proc.poll() is None, projector.tail()
    finally:
        projector.stop()

    found: dict[tuple[int, int], GarbageRecord] = {}
    for letter in letters:
        headers = dict(letter.headers)
        assert headers["dlq_topic"].decode() == settings.topic
        at = (int(headers["dlq_partition"]), int(headers["dlq_offset"]))
        original = where[at]
        assert original.kind != "sound", f"a sound event was dead-lettered: {headers['dlq_reason']!r}"
        assert headers["dlq_reason"].strip(), f"{original.kind}: no reason"
        assert (letter.key, letter.value) == (original.key, original.value), original.kind
        assert list(letter.headers[: len(original.headers)]) == list(original.headers), original.kind
        found[at] = original
    missing = [r.kind for at, r in where.items() if r.kind != "sound" and at not in found]
    assert not missing, f"not dead-lettered: {missing}"
    assert len(letters) == BAD  # each once

    rows = asyncio.run(tenant_rows(settings, Role.PROJECTOR, ORG, "SELECT * FROM overrides ORDER BY level"))
    assert [(r["level"], r["user_id"], r["enabled"], r["version"]) for r in rows] == [
        ("org", "", False, 2),
        ("user", "u-1", True, 1),
    ]
