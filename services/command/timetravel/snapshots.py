"""The snapshot job: fold the log from the last run onwards and store each scope's state.

A run restores the latest part of every scope, folds the flag events after the last
run up to a settled, published cutoff, and writes a part for a scope whenever it has
`every` new events, and at the cutoff for every scope that changed, so each scope's
latest part always covers all of its events up to the last run. Parts are saved as they
are cut (each is sound on its own; a run that stops half-way is redone from the last
recorded run, the fold skipping what a saved part already holds). It records the run's
Kafka position too: per partition, the offset after the last record it covered (the
relay publishes in sequence order). `python -m services.command.timetravel.snapshots [--every N]
[--loop SECONDS]` runs it once, or every SECONDS.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime

from flagcore import FlagState
from flagcore.history import restore, scope_of_stream, snapshot
from services.command.eventstore.parts import Part, Run
from services.command.eventstore.snapshot_store import PostgresHistory
from services.command.timetravel.positions import kafka_positions
from services.infra.postgres import create_pool
from services.infra.settings import Role, Settings

log = logging.getLogger(__name__)

FLUSH = 100  # parts held in memory before they are saved

Positions = Callable[[int, dict[int, int]], Awaitable[dict[int, int]]]  # (sequence, from offsets) -> offsets


async def take(history: PostgresHistory, positions: Positions, *, every: int = 250, settle: float = 5.0) -> Run | None:
    """One run; None when nothing new has settled since the last one."""
    cutoff = await history.cutoff(settle)
    last = await history.latest_run()
    start = last.sequence if last else 0
    if cutoff is None or cutoff <= start:
        return None
    parts = await history.latest_parts()
    # One state per scope: scopes never share a stream, and a part is then cut from its own state.
    states = {p.scope: restore({p.scope: p.doc}) for p in parts}
    counts = {p.scope: p.events for p in parts}
    fresh: dict[str, int] = {}  # scope -> events since its last part
    written: list[tuple[Part, datetime]] = []  # not yet saved
    saved = 0
    until = last.covered_until if last else None
    async for sequence, occurred_at, envelope in history.stream_events(after=start, upto=cutoff):
        until = occurred_at if until is None else max(until, occurred_at)
        scope = scope_of_stream(envelope.stream)
        assert scope is not None  # flag events only
        state = states.setdefault(scope, FlagState())
        if not state.apply(envelope):
            continue
        counts[scope] = counts.get(scope, 0) + 1
        fresh[scope] = fresh.get(scope, 0) + 1
        if fresh[scope] >= every:
            written.append((Part(scope, sequence, counts[scope], snapshot(state, scope).doc), until))
            del fresh[scope]
            if len(written) >= FLUSH:
                await history.save_parts(written)
                saved += len(written)
                written.clear()
    assert until is not None
    written += [
        (Part(scope, cutoff, counts[scope], snapshot(states[scope], scope).doc), until) for scope in sorted(fresh)
    ]
    await history.save_parts(written)
    saved += len(written)
    run = Run(cutoff, until, await positions(cutoff, last.kafka_offsets if last else {}))
    await history.save_run(run)
    log.info("snapshot run up to sequence %d: %d parts, Kafka offsets %s", cutoff, saved, run.kafka_offsets)
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--every", type=int, default=250, help="events of one scope between its parts")
    parser.add_argument("--loop", type=float, default=0.0, help="seconds between runs (0: one run)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = Settings()

    async def run() -> None:
        pool = await create_pool(settings, Role.COMMAND)
        try:
            history = PostgresHistory(pool)
            while True:
                await take(history, lambda seq, start: kafka_positions(settings, seq, start), every=args.every)
                if args.loop <= 0:
                    return
                await asyncio.sleep(args.loop)
        finally:
            await pool.close()

    asyncio.run(run())


if __name__ == "__main__":
    main()
