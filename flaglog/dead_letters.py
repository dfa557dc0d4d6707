"""A record that cannot be applied, kept as it came with the reason why (for the dead-letter topic)."""

from __future__ import annotations

from dataclasses import dataclass

from flaglog.records import RawRecord


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A record the projector cannot apply; it goes to the dead-letter topic as it came."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]
    reason: str

    @classmethod
    def of(cls, record: RawRecord, reason: str) -> DeadLetter:
        return cls(
            record.topic,
            record.partition,
            record.offset,
            record.key,
            record.value,
            tuple(record.headers or ()),
            reason,
        )

    def out_headers(self) -> list[tuple[str, bytes]]:
        """The original headers plus where the record came from and why it was rejected."""
        return [
            *self.headers,
            ("dlq_reason", self.reason.encode()),
            ("dlq_topic", self.topic.encode()),
            ("dlq_partition", str(self.partition).encode()),
            ("dlq_offset", str(self.offset).encode()),
        ]
