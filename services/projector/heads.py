"""Stream heads (the last applied version and hash of each stream) and the cache of them a projector keeps."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from flaglog import TopicPartition


@dataclass(frozen=True, slots=True)
class Head:
    """The last applied version and hash of a stream."""

    version: int
    hash: str


class HeadCache:
    """Stream heads this process has written or read, so a batch need not read them again.

    Valid only while nobody else applies the same partitions: every batch compares
    the offsets it locked with the ones this cache last committed, and any
    difference (another instance, a lost commit acknowledgement) empties it.
    `complete` means the cache holds every head there is (a projection that
    started on an empty database), so a stream it lacks has no head.
    """

    def __init__(self, max_streams: int = 200_000) -> None:
        self.heads: dict[str, Head] = {}
        self.complete = False
        self._expected: dict[TopicPartition, int] = {}
        self._max = max_streams

    def reset(self) -> None:
        self.heads = {}
        self.complete = False
        self._expected = {}

    @property
    def started(self) -> bool:
        return bool(self._expected)

    def track(self, stored: dict[TopicPartition, int], *, database_was_empty: bool = False) -> None:
        """Check the offsets just locked for a batch against what this cache last committed."""
        if any(tp in self._expected and self._expected[tp] != offset for tp, offset in stored.items()):
            self.reset()
        if not self._expected:
            self.complete = database_was_empty
        for tp, offset in stored.items():
            if tp not in self._expected:
                if offset > 0:  # applied before this cache started: its heads are not here
                    self.complete = False
                self._expected[tp] = offset

    def lookup(self, streams: Iterable[str]) -> tuple[dict[str, Head], list[str]]:
        """Known heads, and the streams whose head must be read from the database."""
        known: dict[str, Head] = {}
        missing: list[str] = []
        for stream in streams:
            head = self.heads.get(stream)
            if head is not None:
                known[stream] = head
            elif not self.complete:
                missing.append(stream)
        return known, missing

    def committed(self, heads: dict[str, Head], offsets: dict[TopicPartition, int]) -> None:
        """After a commit: remember the heads read or written and the offsets stored."""
        if len(self.heads) + len(heads) > self._max:
            self.reset()
            return
        self.heads.update(heads)
        for tp, offset in offsets.items():
            self._expected[tp] = max(offset, self._expected.get(tp, 0))
