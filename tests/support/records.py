"""Consumed records for tests: `Rec` fits `flaglog.RawRecord`; `records(log)` reads a log as one partition holds it,
`interleaved(parts)` cuts partitions into fetches as a consumer gets them."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Protocol

from events import Record

TOPIC = "flags.changes"


@dataclass(frozen=True)
class Rec:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]


class Log(Protocol):
    """An event log that can say what records its events become (`tests.support.eventlog.EventLog`)."""

    def records(self) -> list[Record]: ...


def records(log: Log, partition: int = 0, start: int = 0) -> list[Rec]:
    return [Rec(TOPIC, partition, start + i, r.key, r.value, tuple(r.headers)) for i, r in enumerate(log.records())]


def interleaved(parts: list[list[Rec]], rng: random.Random) -> list[list[Rec]]:
    """Fetches as a consumer gets them: a few records of one partition or another at a time."""
    cursors = [0] * len(parts)
    fetches = []
    while any(c < len(p) for c, p in zip(cursors, parts, strict=True)):
        fetch: list[Rec] = []
        for i, p in enumerate(parts):
            n = rng.randint(0, 6)
            fetch += p[cursors[i] : cursors[i] + n]
            cursors[i] = min(cursors[i] + n, len(p))
        if fetch:
            fetches.append(fetch)
    return fetches
