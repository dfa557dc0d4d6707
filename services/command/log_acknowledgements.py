"""Foreign records on the log acknowledged as known: an event in the event store like any other."""

from __future__ import annotations

from datetime import datetime

import asyncpg

from events import Actor, Envelope, ForeignRecordAcknowledged
from services.command.eventstore.writes import append_change


class PostgresLogAcknowledgements:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def acknowledge(
        self, change: ForeignRecordAcknowledged, *, actor: Actor, reason: str, now: datetime
    ) -> Envelope:
        # Version 1 of the record's own stream: acknowledging it again is a version conflict, never a second event.
        return await append_change(self._pool, change, expected_version=0, actor=actor, reason=reason, now=now)
