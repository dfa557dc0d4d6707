"""What the snapshot tables hold, as plain values: the time-travel use case and the snapshot job read and
write them through `snapshot_store` without importing any driver."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True, slots=True)
class Part:
    """A stored snapshot part: the scope's state after every event up to `sequence`."""

    scope: str
    sequence: int
    events: int
    doc: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Run:
    sequence: int
    covered_until: datetime | None
    kafka_offsets: dict[int, int]
