"""Sealing changes onto a stream head: the append rules every store applies the same way.

Pure: given the head read inside the store's transaction, check the expected
version and the flag's definition, then turn each change into an envelope
whose version, previous value and `prev_hash` follow from the one before it.
Both the Postgres store and the in-memory one call this, so they cannot drift.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import datetime
from uuid import UUID, uuid4

from events import GENESIS_HASH, Actor, AnyChange, Change, Envelope, FlagChange, FlagDefined, definition_stream, seal
from flagcore import StreamHead, transition
from services.command.errors import UnknownFlag, VersionConflict
from services.command.handlers import require_live_flag

EMPTY_HEAD = StreamHead(version=0, hash=GENESIS_HASH, value=None)

__all__ = ["EMPTY_HEAD", "check_expected", "check_flag", "head_from_body", "seal_changes", "target_stream"]


def target_stream(changes: Sequence[FlagChange]) -> str:
    """The one stream a batch of changes appends to (a batch never spans streams)."""
    if not changes:
        raise ValueError("nothing to append")
    streams = {change.stream for change in changes}
    if len(streams) != 1:
        raise ValueError(f"one append writes one stream, got {sorted(streams)}")
    return streams.pop()


def definition_of(changes: Sequence[FlagChange]) -> str:
    return definition_stream(changes[0].flag_key)


def check_expected(stream: str, head: StreamHead, expected_version: int | None) -> None:
    if expected_version is not None and head.version != expected_version:
        raise VersionConflict(stream, head.version, expected_version)


def check_flag(changes: Sequence[FlagChange], definition: StreamHead) -> None:
    """Settings need a live flag; updating or archiving needs a defined one."""
    first = changes[0]
    if first.scope is not None:
        require_live_flag(first.flag_key, definition.value)
    elif not isinstance(first, FlagDefined) and definition.value is None:
        raise UnknownFlag(first.flag_key)


def seal_changes(
    changes: Sequence[Change],
    head: StreamHead,
    *,
    sequences: Sequence[int],
    actor: Actor,
    reason: str,
    occurred_at: datetime,
    new_id: Callable[[], UUID] = uuid4,
) -> list[Envelope]:
    """Envelopes for `changes` at versions head+1, head+2, … chained by hash."""
    envelopes: list[Envelope] = []
    value, version, prev_hash = head.value, head.version, head.hash
    for change, sequence in zip(changes, sequences, strict=True):
        new = transition(value, change, at=occurred_at)
        envelope = seal(
            event_id=new_id(),
            sequence=sequence,
            version=version + 1,
            occurred_at=occurred_at,
            actor=actor,
            reason=reason,
            previous=value,
            new=new,
            data=_as_any(change),
            prev_hash=prev_hash,
        )
        envelopes.append(envelope)
        value, version, prev_hash = new, envelope.version, envelope.hash
    return envelopes


def head_from_body(version: int, hash_: str, body: bytes) -> StreamHead:
    """A stored event's stream head: its version, hash and the `new` value it recorded."""
    return StreamHead(version=version, hash=hash_, value=json.loads(body)["new"])


def _as_any(change: Change) -> AnyChange:
    return change  # type: ignore[return-value]  # every concrete Change is a member of the union
