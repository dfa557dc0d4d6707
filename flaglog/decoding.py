"""One consumed record → a sound event (`Decoded`) or a `DeadLetter` with the reason; never raises.

This is the decoder of record: the projector, the rebuild (through the fast
decoder, which falls back to it) and the in-process SDK all accept exactly what it
accepts, so the read models and every follower of the log hold the same events.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from events import DecodeError, Envelope, FlagChange, Scope, from_record
from flaglog.checks import checked_value
from flaglog.dead_letters import DeadLetter
from flaglog.records import RawRecord, TopicPartition

# A JSON-escaped NUL (an odd run of backslashes before u0000): Postgres text and jsonb cannot hold it.
NUL_ESCAPE = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")


@dataclass(frozen=True, slots=True)
class Decoded:
    """A sound event, where it was read, its scope and (for a setting) the stream value it sets."""

    record: RawRecord
    envelope: Envelope
    scope: Scope | None  # None for definition events
    value: dict[str, Any] | None  # settings: transition(previous, data); definitions: set when planned

    @property
    def tp(self) -> TopicPartition:
        return TopicPartition(self.record.topic, self.record.partition)

    @property
    def offset(self) -> int:
        return self.record.offset


def decode_record(record: RawRecord) -> Decoded | DeadLetter | None:
    """Decode and check one record; never raises for a bad record.

    None: a sound event the read models do not hold (API key events).
    """
    try:
        if record.value is not None and b"\\u0000" in record.value and NUL_ESCAPE.search(record.value):
            raise DecodeError("contains a NUL character, which Postgres cannot store")
        envelope = from_record(record.value, record.headers or ())
        if record.key != envelope.partition_key.encode():
            # Per-stream order holds only if every event of an org is keyed (so partitioned) by it.
            raise DecodeError(f"record key {record.key!r} is not the event's partition key")
        if not isinstance(envelope.data, FlagChange):
            return None
        scope = envelope.data.scope
        value = checked_value(envelope, scope)
    except DecodeError as exc:
        return DeadLetter.of(record, exc.reason)
    except Exception as exc:  # any other validation failure is still the record's fault
        return DeadLetter.of(record, f"{type(exc).__name__}: {exc}")
    return Decoded(record, envelope, scope, value)
