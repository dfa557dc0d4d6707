"""A record as read from the log, and positions in the log.

`RawRecord` is what decoding needs of a consumed Kafka record (aiokafka's
`ConsumerRecord` fits; so does a test's dataclass), so nothing here imports Kafka.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import NamedTuple, Protocol


class RawRecord(Protocol):
    """What the projector needs of a consumed Kafka record (aiokafka's ConsumerRecord fits)."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def headers(self) -> Sequence[tuple[str, bytes]]: ...


class TopicPartition(NamedTuple):
    topic: str
    partition: int


def next_offsets(records: Iterable[RawRecord]) -> dict[TopicPartition, int]:
    """Per partition, the offset after the last record."""
    result: dict[TopicPartition, int] = {}
    for r in records:
        tp = TopicPartition(r.topic, r.partition)
        result[tp] = max(result.get(tp, 0), r.offset + 1)
    return result
