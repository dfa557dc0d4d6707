"""Reading API keys from Postgres (both HTTP services; the projector has no grant)."""

from __future__ import annotations

from datetime import datetime

import asyncpg

from services.auth.authenticator import KeyRecord
from services.auth.policy import Role

_FIND = """
SELECT key_id, name, role, org_id, secret_hash, expires_at, revoked_at FROM api_keys WHERE key_id = $1
"""


class PostgresKeyLookup:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def find_key(self, key_id: str) -> KeyRecord | None:
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
        await self._pool.execute("UPDATE api_keys SET last_used_at = $2 WHERE key_id = $1", key_id, at)
