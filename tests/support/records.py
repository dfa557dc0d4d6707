"""Consumed records for tests: `Rec` fits `flaglog.RawRecord`; `records(log)` reads a log as one partition holds it."""

from __future__ import annotations

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
