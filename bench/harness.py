"""Shared plumbing for the benchmarks: an isolated database and topic, progress, percentiles."""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

import asyncpg

from events import KeyRole
from flaglog.progress import ProgressLine
from services.command.admin_key import create_key
from services.infra.kafka import ensure_topics
from services.infra.provision import provision
from services.infra.settings import Settings
from tests.support.auth import register_admin_key
from tests.support.processes import free_port

REPO = Path(__file__).resolve().parents[1]


NAMED = ("FLAGS_PG_ADMIN_URL", "FLAGS_KAFKA_BOOTSTRAP", "FLAGS_REDIS_URL")


def stack_env() -> dict[str, str]:
    """The servers' URLs: those the environment names (as the tests take them), else the local ones, started."""
    if all(os.environ.get(name) for name in NAMED):
        return {name: os.environ[name] for name in NAMED}
    subprocess.run(["bash", str(REPO / "scripts/stack"), "start"], check=True, stdout=subprocess.DEVNULL)
    out = subprocess.run(["bash", str(REPO / "scripts/stack"), "env"], check=True, capture_output=True, text=True)
    return dict(line.removeprefix("export ").split("=", 1) for line in out.stdout.splitlines() if "=" in line)


async def isolated_settings(label: str, **overrides: object) -> Settings:
    """A fresh database and fresh topics on the local servers, so runs never mix."""
    env = stack_env()
    run = f"{label}_{uuid.uuid4().hex[:8]}"
    settings = Settings(
        pg_admin_url=env["FLAGS_PG_ADMIN_URL"],
        kafka_bootstrap=env["FLAGS_KAFKA_BOOTSTRAP"],
        redis_url=env["FLAGS_REDIS_URL"],
        pg_database=f"bench_{run}",
        topic=f"bench.{run}.changes",
        dead_letter_topic=f"bench.{run}.dlq",
        projector_group=f"bench-{run}",
        redis_prefix=f"bench-{run}",
        command_port=free_port(),
        query_port=free_port(),
        projector_port=free_port(),
        # a benchmark writes as fast as it can with one key: the per-key write rate would be the figure
        command_rate_per_second=1_000_000.0,
        command_rate_burst=1_000_000,
        **overrides,  # type: ignore[arg-type]
    )
    await provision(settings)
    await ensure_topics(settings)
    token = await create_key(settings, role=KeyRole.SYSTEM_ADMIN, name="bench admin", reason="benchmark")
    register_admin_key(settings.pg_database, token)
    return settings


async def drop_database(settings: Settings) -> None:
    conn = await asyncpg.connect(settings.pg_admin_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{settings.pg_database}" WITH (FORCE)')
    finally:
        await conn.close()


class Progress:
    """A progress bar on stderr with rate and ETA (`flaglog.progress`: in place on a terminal, lines elsewhere)."""

    def __init__(self, label: str, total: int) -> None:
        self.label, self.total = label, total
        self.started = time.monotonic()
        self._line = ProgressLine(sys.stderr)

    def update(self, done: int) -> None:
        if not (done >= self.total or self._line.due()):
            return
        elapsed = max(time.monotonic() - self.started, 1e-9)
        rate = done / elapsed
        eta = (self.total - done) / rate if rate > 0 else float("inf")
        width = 30
        filled = int(width * min(done, self.total) / self.total) if self.total else width
        bar = "#" * filled + "." * (width - filled)
        text = f"{self.label:<12} [{bar}] {done:>9,}/{self.total:,}  {rate:>10,.0f}/s  ETA {eta:5.1f}s"
        self._line.show(text, force=done >= self.total)

    def finish(self) -> None:
        self._line.end()


def percentiles(samples_ms: list[float]) -> dict[str, float]:
    ordered = sorted(samples_ms)

    def pick(q: float) -> float:
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]

    return {
        "n": len(ordered),
        "p50": pick(0.50),
        "p90": pick(0.90),
        "p99": pick(0.99),
        "max": ordered[-1],
        "mean": statistics.fmean(ordered),
    }


def run(coro) -> None:  # type: ignore[no-untyped-def]
    asyncio.run(coro)
