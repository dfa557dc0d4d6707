"""`FoldingProjector` (the rebuild's) against `Projector` (the live one) on the fake store: the same tables.

A random log (definitions, kill switches, settings at every level, clears, rollouts, a
republished stretch, a broken record) is applied once batch by batch as the live projector
does, and once folded with checkpoints at random sizes, resumed by a fresh fold after each
checkpoint or not: offsets, heads, overrides, definitions and history must be equal.
"""

from __future__ import annotations

import asyncio
import random

import pytest

from flaglog import TopicPartition, decode_fast
from services.projector.heads import Head
from services.projector.projection import FoldingProjector, InfrastructureError, Projector, RejectedByPostgres
from services.projector.tenant_plan import TenantPlan
from tests.support.eventlog import EventLog, mixed_log
from tests.support.projector_fakes import FakeDeadLetters, FakeInvalidator, FakeStore
from tests.support.records import Rec, interleaved

TOPIC = "flags.changes"


def partitioned(log: EventLog, partitions: int = 2) -> list[list[Rec]]:
    """Each partition's records in offset order; an org (and the system streams) on one partition, as keyed."""
    parts: list[list[Rec]] = [[] for _ in range(partitions)]
    for r in log.records():
        p = parts[sum(r.key or b"") % partitions]
        p.append(Rec(TOPIC, parts.index(p), len(p), r.key, r.value, tuple(r.headers)))
    return parts


def with_trouble(parts: list[list[Rec]], rng: random.Random) -> list[list[Rec]]:
    """A stretch of each partition published again (duplicates), and one broken record."""
    out = []
    for p, recs in enumerate(parts):
        start = rng.randrange(len(recs) // 2)
        again = recs[start : start + rng.randint(1, 8)]
        broken = Rec(TOPIC, p, 0, b"o1", b'{"not": "an event"}', ())
        body = [*recs, *again, broken]
        out.append([Rec(TOPIC, p, i, r.key, r.value, r.headers) for i, r in enumerate(body)])
    return out


async def live(fetches: list[list[Rec]]) -> FakeStore:
    store = FakeStore()
    projector = Projector(store, FakeDeadLetters(store), FakeInvalidator(store), retry_backoff=0)
    for fetch in fetches:
        await projector.apply(fetch)
    return store


async def folded(fetches: list[list[Rec]], rng: random.Random, *, resume: bool) -> tuple[FakeStore, int]:
    store = FakeStore()
    letters = FakeDeadLetters(store)
    folder = FoldingProjector(store, letters, decode=decode_fast)
    every = rng.randint(1, 40)
    for fetch in fetches:
        await folder.add(fetch)
        if folder.pending >= every:
            await folder.checkpoint()
            if resume:  # a new process after the checkpoint: heads and definitions read back from the store
                folder = FoldingProjector(store, letters, decode=decode_fast)
    await folder.checkpoint()
    return store, len(letters.sent)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("resume", [False, True])
def test_folding_with_checkpoints_writes_what_the_live_projector_writes(seed: int, resume: bool) -> None:
    rng = random.Random(seed)
    fetches = interleaved(with_trouble(partitioned(mixed_log(seed)), rng), rng)
    expected = asyncio.run(live(fetches))
    store, dead = asyncio.run(folded(fetches, rng, resume=resume))
    history = store.state.pop("history")
    assert sorted(history) == sorted(expected.state.pop("history"))  # a table: the rows, in no order
    assert len(history) == len(set(history))
    assert store.state == expected.state
    assert dead == 2  # the broken record of each partition
    assert expected.state["overrides"] and expected.state["flags"]


def test_a_checkpoint_is_one_transaction_and_a_fold_reads_no_head_on_an_empty_store() -> None:
    log = mixed_log(1)
    recs = partitioned(log, 1)[0]
    store = FakeStore()
    folder = FoldingProjector(store, FakeDeadLetters(store))
    for i in range(0, len(recs), 10):
        asyncio.run(folder.add(recs[i : i + 10]))
    assert store.state["offsets"] == {} and folder.pending == len(recs)
    result = asyncio.run(folder.checkpoint())
    assert store.log.count("commit") == 2  # one to ask whether anything was projected, one checkpoint
    assert store.head_reads == 0
    assert result.applied == len(log.events) and folder.pending == 0
    assert store.state["offsets"] == {TopicPartition(TOPIC, 0): len(recs)}


def test_a_data_error_keeps_nothing_and_someone_elses_progress_stops_the_fold() -> None:
    recs = partitioned(mixed_log(2), 1)[0]
    store = FakeStore()
    store.fail_write = lambda plan: plan.org_id == "o2"
    folder = FoldingProjector(store, FakeDeadLetters(store))
    asyncio.run(folder.add(recs))
    with pytest.raises(RejectedByPostgres):
        asyncio.run(folder.checkpoint())
    assert store.state["offsets"] == {} and store.state["history"] == []

    store = FakeStore()
    folder = FoldingProjector(store, FakeDeadLetters(store))
    asyncio.run(folder.add(recs[:20]))
    store.state["offsets"][TopicPartition(TOPIC, 0)] = 5  # another consumer applied some of them
    with pytest.raises(InfrastructureError):
        asyncio.run(folder.checkpoint())


def test_absorb_keeps_the_last_row_per_key_and_every_history_row() -> None:
    first, later = TenantPlan("o1", applied=1), TenantPlan("o1", applied=2, duplicates=1)
    first.heads["s"], later.heads["s"] = Head(1, "a"), Head(3, "c")
    first.overrides[("org", "", "", "k")] = None  # type: ignore[index]
    later.overrides[("org", "", "", "k")] = "row"  # type: ignore[index,assignment]
    first.history, later.history = ["h1"], ["h2", "h3"]  # type: ignore[list-item]
    first.absorb(later)
    assert (first.applied, first.duplicates, first.heads) == (3, 1, {"s": Head(3, "c")})
    assert first.overrides == {("org", "", "", "k"): "row"} and first.history == ["h1", "h2", "h3"]

