"""Console sessions: the API key stays on the server, the browser holds only a random id.

A session is stored under the SHA-256 of its id (a copy of the store does not
yield usable cookies) and expires after `idle` seconds without a request: each
read pushes the expiry forward. The Redis store is what runs; the memory store
is the fake the unit tests use, with the same contract.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable

from redis.asyncio import Redis

from services.console.ports import Session, new_token

__all__ = ["MemorySessionStore", "RedisSessionStore"]


def _digest(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


class RedisSessionStore:
    def __init__(self, redis: Redis, *, prefix: str, idle: int) -> None:
        self._redis = redis
        self._prefix = f"{prefix}:console:session:"
        self._idle = idle

    async def create(self, session: Session) -> str:
        session_id = new_token()
        await self._redis.set(self._prefix + _digest(session_id), session.dumps(), ex=self._idle)
        return session_id

    async def get(self, session_id: str) -> Session | None:
        raw = await self._redis.getex(self._prefix + _digest(session_id), ex=self._idle)
        return None if raw is None else Session.loads(raw)

    async def delete(self, session_id: str) -> None:
        await self._redis.delete(self._prefix + _digest(session_id))


class MemorySessionStore:
    def __init__(self, *, idle: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._idle = idle
        self._clock = clock
        self.rows: dict[str, tuple[Session, float]] = {}  # digest -> (session, last seen)

    async def create(self, session: Session) -> str:
        session_id = new_token()
        self.rows[_digest(session_id)] = (session, self._clock())
        return session_id

    async def get(self, session_id: str) -> Session | None:
        row = self.rows.get(_digest(session_id))
        if row is None or self._clock() - row[1] > self._idle:
            self.rows.pop(_digest(session_id), None)
            return None
        self.rows[_digest(session_id)] = (row[0], self._clock())
        return row[0]

    async def delete(self, session_id: str) -> None:
        self.rows.pop(_digest(session_id), None)
