"""Reading API keys from Postgres (both HTTP services; the projector has no grant).

A failure to reach the database becomes `KeyStoreUnavailable` (each service answers it with its
503 and `Retry-After`); the outage is logged when it starts and when it ends, not once per request.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime

import asyncpg

from services.auth.authenticator import KeyRecord, KeyStoreUnavailable
from services.auth.policy import Role
from services.infra.pg_errors import UNREACHABLE

log = logging.getLogger(__name__)

_FIND = """
SELECT key_id, name, role, org_id, secret_hash, expires_at, revoked_at FROM api_keys WHERE key_id = $1
"""


class PostgresKeyLookup:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._down = False

    async def find_key(self, key_id: str) -> KeyRecord | None:
        async with self._reachable():
            row = await self._pool.fetchrow(_FIND, key_id)
        if row is None:
            return None
        return KeyRecord(
            key_id=row["key_id"],
            name=row["name"],
            role=Role(row["role"]),
            org_id=row["org_id"],
            secret_hash=row["secret_hash"],
            expires_at=row["expires_at"],
            revoked_at=row["revoked_at"],
        )

    async def touch_key(self, key_id: str, at: datetime) -> None:
        async with self._reachable():
            await self._pool.execute("UPDATE api_keys SET last_used_at = $2 WHERE key_id = $1", key_id, at)

    @asynccontextmanager
    async def _reachable(self) -> AsyncIterator[None]:
        try:
            yield
        except UNREACHABLE as exc:
            if not self._down:
                self._down = True
                log.warning("the API key store is unreachable (answering 503 until it is back): %r", exc)
            raise KeyStoreUnavailable(f"PostgreSQL unavailable: {exc.__class__.__name__}") from exc
        if self._down:
            self._down = False
            log.warning("the API key store is reachable again")
