"""Sealing changes onto a stream head: the append rules every store applies the same way.

Pure: given the head read inside the store's transaction, check the expected
version and the flag's definition, then turn each change into an envelope
whose version, previous value and `prev_hash` follow from the one before it.
Both the Postgres store and the in-memory one call this, so they cannot drift.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from uuid import UUID, uuid4

from events import (
    GENESIS_HASH,
    Actor,
    AnyChange,
    Change,
    Envelope,
    FlagChange,
    FlagDefined,
    TargetingRulesSet,
    definition_stream,
    seal,
    segment_stream,
)
from events.targeting import SEGMENT_OPERATORS
from flagcore import StreamHead, transition
from services.command.errors import InvalidCommand, UnknownFlag, VersionConflict
from services.command.handlers import require_live_flag

EMPTY_HEAD = StreamHead(version=0, hash=GENESIS_HASH, value=None)

__all__ = [
    "EMPTY_HEAD",
    "check_expected",
    "check_flag",
    "check_segments",
    "head_from_body",
    "named_segments",
    "seal_changes",
    "target_stream",
]


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


def named_segments(changes: Sequence[FlagChange]) -> list[str]:
    """The segment streams that targeting rules among `changes` may name, in one order: for each key named,
    the org's segment of that key (an org's rules) and the system's. Their heads are what `check_segments` reads
    (and their locks what an append takes, shared, so no archive commits meanwhile)."""
    return sorted(
        {
            stream
            for change, _, _, key in _segment_references(changes)
            for stream in {segment_stream(None, key), segment_stream(change.org_id, key)}
        }
    )


def check_segments(changes: Sequence[FlagChange], heads: Mapping[str, StreamHead]) -> None:
    """Every segment a rule names resolves, as evaluation resolves it (the org's own, else the system's), to a
    live segment; else `InvalidCommand` naming the condition's values (a rule naming none would never match)."""
    for change, i, j, key in _segment_references(changes):
        own = heads.get(segment_stream(change.org_id, key)) if change.org_id is not None else None
        found = own if own is not None and own.value is not None else heads.get(segment_stream(None, key))
        value = None if found is None else found.value
        if value is None or value.get("archived"):
            field = f"rules.{i}.conditions.{j}.values"
            state = "is archived" if value is not None else "is not defined"
            raise InvalidCommand(f"{field}: segment {key!r} {state} (for these rules)", field=field)


def _segment_references(changes: Sequence[FlagChange]) -> Iterator[tuple[TargetingRulesSet, int, int, str]]:
    for change in changes:
        if not isinstance(change, TargetingRulesSet):
            continue
        for i, rule in enumerate(change.rules):
            for j, condition in enumerate(rule.conditions):
                if condition.operator in SEGMENT_OPERATORS:
                    for key in condition.values:
                        yield change, i, j, str(key)


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
