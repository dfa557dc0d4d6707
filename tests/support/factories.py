"""Building sealed, hash-chained events for tests without any service."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from events import GENESIS_HASH, Actor, AnyChange, Envelope, seal
from flagcore import InvalidTransition, transition

ALICE = Actor(id="user:alice", name="alice")
T0 = datetime(2026, 1, 1, tzinfo=UTC)


class LogBuilder:
    """Seals changes in order the way the command store does: per-stream versions and hashes."""

    def __init__(self, start: datetime = T0) -> None:
        self.heads: dict[str, tuple[int, str, dict | None]] = {}
        self.sequence = 0
        self.clock = start
        self.events: list[Envelope] = []

    def append(self, change: AnyChange, *, reason: str = "test", actor: Actor = ALICE) -> Envelope | None:
        """Seal `change`; None (nothing appended) when it is invalid or changes nothing."""
        version, prev_hash, previous = self.heads.get(change.stream, (0, GENESIS_HASH, None))
        at = self.clock + timedelta(seconds=1)
        try:
            new = transition(previous, change, at=at)
        except InvalidTransition:
            return None
        if version and new == previous:
            return None
        self.sequence += 1
        self.clock = at
        envelope = seal(
            event_id=uuid.uuid4(),
            sequence=self.sequence,
            version=version + 1,
            occurred_at=self.clock,
            actor=actor,
            reason=reason,
            previous=previous,
            new=new,
            data=change,
            prev_hash=prev_hash,
        )
        self.heads[change.stream] = (envelope.version, envelope.hash, new)
        self.events.append(envelope)
        return envelope

    def extend(self, changes: Iterable[AnyChange]) -> list[Envelope]:
        return [e for c in changes if (e := self.append(c)) is not None]
