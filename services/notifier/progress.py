"""How far each partition may be committed: up to the first record whose deliveries are not all recorded.

Deliveries finish out of order (each destination at its own pace), but an offset is a watermark: it
may pass a record only when that record and every one before it are done. Pure: a "wait" is anything
with `done()` (the dispatcher's futures).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from typing import Protocol

__all__ = ["Progress"]


class Wait(Protocol):
    def done(self) -> bool: ...


class Progress:
    def __init__(self) -> None:
        self._pending: dict[int, deque[tuple[int, Sequence[Wait]]]] = {}
        self._position: dict[int, int] = {}  # the next offset to consume, as far as it may be committed
        self._committed: dict[int, int] = {}

    def add(self, partition: int, offset: int, waits: Sequence[Wait]) -> None:
        """Record `offset` as consumed; it is done once every one of `waits` is."""
        self._pending.setdefault(partition, deque()).append((offset, waits))

    def committable(self) -> dict[int, int]:
        """The partitions whose committable position moved since the last call, and that position."""
        moved = {}
        for partition, pending in self._pending.items():
            while pending and all(w.done() for w in pending[0][1]):
                self._position[partition] = pending.popleft()[0] + 1
            position = self._position.get(partition)
            if position is not None and position != self._committed.get(partition):
                self._committed[partition] = moved[partition] = position
        return moved

    def committed(self, partition: int) -> int | None:
        """The position last returned by `committable` for `partition`, None before any."""
        return self._committed.get(partition)

    def unfinished(self) -> int:
        return sum(len(p) for p in self._pending.values())

    def forget(self, partitions: Iterable[int]) -> None:
        """Drop what is known of partitions this consumer no longer owns."""
        for partition in partitions:
            self._pending.pop(partition, None)
            self._position.pop(partition, None)
            self._committed.pop(partition, None)
