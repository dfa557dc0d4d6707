"""Projector throughput: replay N events (default 100,000) from the topic into Postgres.

    .venv/bin/python -m bench.projector_replay [--events 100000]

Target: >= 5,000 events/s end to end, measured from the
projector's start (including its group join) to the last offset committed.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import tempfile
import time
from pathlib import Path

import asyncpg
from aiokafka import AIOKafkaProducer

from bench.harness import Progress, drop_database, isolated_settings
from events import (
    FlagDefined,
    Level,
    OrgOverrideSet,
    PlatformOverrideSet,
    RolloutPercentageSet,
    SystemDefaultSet,
    UserOverrideSet,
    to_record,
)
from flagcore import SEED_FLAGS
from flaglog.connection import client_options
from tests.support.factories import LogBuilder
from tests.support.processes import ServiceProcess

TARGET = 5_000


def synthetic_log(n: int, seed: int = 7) -> LogBuilder:
    """A realistic mix: the catalogue, then org, platform, user overrides and rollouts."""
    rnd = random.Random(seed)
    log = LogBuilder()
    for flag in SEED_FLAGS:
        log.append(FlagDefined(flag_key=flag.key, group=flag.group, kind=flag.kind, owner=flag.owner))
        log.append(SystemDefaultSet(flag_key=flag.key, enabled=flag.default_on))
    keys = [f.key for f in SEED_FLAGS]
    orgs = [f"org-{i:04d}" for i in range(500)]
    platforms = ["meta", "google", "tiktok", "linkedin", "twitter", "snapchat"]
    while len(log.events) < n:
        key, org, roll = rnd.choice(keys), rnd.choice(orgs), rnd.random()
        if roll < 0.4:
            change = OrgOverrideSet(flag_key=key, org_id=org, enabled=rnd.random() < 0.5)
        elif roll < 0.6:
            change = PlatformOverrideSet(flag_key=key, org_id=org, platform=rnd.choice(platforms),
                                         enabled=rnd.random() < 0.5)
        elif roll < 0.85:
            change = UserOverrideSet(flag_key=key, org_id=org, user_id=f"u{rnd.randrange(5000)}",
                                     enabled=rnd.random() < 0.5)
        else:
            change = RolloutPercentageSet(flag_key=key, level=Level.ORG, org_id=org, percentage=rnd.randrange(101))
        log.append(change)
    return log


async def produce(settings, log: LogBuilder) -> None:  # type: ignore[no-untyped-def]
    producer = AIOKafkaProducer(
        **client_options(settings), enable_idempotence=True, acks="all",
        linger_ms=5, max_batch_size=256 * 1024,
    )
    await producer.start()
    progress = Progress("produce", len(log.events))
    try:
        pending = []
        for i, envelope in enumerate(log.events, 1):
            record = to_record(envelope)
            pending.append(await producer.send(settings.topic, record.value, key=record.key, headers=record.headers))
            if i % 5000 == 0:
                await asyncio.gather(*pending)
                pending.clear()
                progress.update(i)
        await asyncio.gather(*pending)
        progress.update(len(log.events))
    finally:
        progress.finish()
        await producer.stop()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    args = parser.parse_args()

    settings = await isolated_settings("replay")
    try:
        t = time.monotonic()
        log = synthetic_log(args.events)
        print(f"built {len(log.events):,} sealed events in {time.monotonic() - t:.1f}s")
        await produce(settings, log)

        admin = await asyncpg.connect(settings.pg_admin_url.rsplit("/", 1)[0] + f"/{settings.pg_database}")
        projector = ServiceProcess("projector", settings, Path(tempfile.mkdtemp()))
        started = time.monotonic()
        projector.start()
        progress = Progress("project", len(log.events))
        try:
            while True:
                done = await admin.fetchval("SELECT coalesce(sum(next_offset), 0) FROM projector_offsets") or 0
                progress.update(int(done))
                if done >= len(log.events):
                    break
                if projector.proc and projector.proc.poll() is not None:
                    raise SystemExit(f"projector exited:\n{projector.tail()}")
                await asyncio.sleep(0.2)
            elapsed = time.monotonic() - started
            progress.finish()
            rows = await admin.fetchval("SELECT count(*) FROM flag_history")
        finally:
            projector.stop()
            await admin.close()
        rate = len(log.events) / elapsed
        verdict = "meets" if rate >= TARGET else "MISSES"
        print(f"projector replay: {len(log.events):,} events in {elapsed:.1f}s = {rate:,.0f} events/s "
              f"({verdict} the {TARGET:,}/s target); flag_history rows: {rows:,}")
    finally:
        await drop_database(settings)


if __name__ == "__main__":
    asyncio.run(main())
