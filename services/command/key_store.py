"""API keys on the command side: the `api_keys` row and its event, committed together.

Creating, revoking and changing the expiry of a key are events in the log like
any other change (stream `key/<id>`); the row the services authenticate against
is written in the same transaction, so the table and the log cannot disagree.
The event is written under the tenancy of the key's org (`writer_for`); `api_keys` itself
is outside row-level security: a key is looked up by its id before anyone knows its org.
"""

from __future__ import annotations

from datetime import datetime

import asyncpg

from events import Actor, ApiKeyCreated, ApiKeyExpirySet, ApiKeyRevoked, Envelope, KeyChange, key_stream
from services.auth.keys import NewKey
from services.auth.policy import Role
from services.command.errors import UnknownKey
from services.command.eventstore.driver_errors import translated
from services.command.eventstore.writes import read_head, write_events
from services.command.ports import KeyInfo
from services.command.tenancy import writer_for
from services.infra.postgres import set_tenancy

_COLUMNS = "key_id, name, role, org_id, created_at, created_by, expires_at, revoked_at, last_used_at"


class PostgresKeyStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def create(
        self,
        new_key: NewKey,
        *,
        name: str,
        role: Role,
        org_id: str | None,
        expires_at: datetime | None,
        actor: Actor,
        reason: str,
        now: datetime,
    ) -> tuple[KeyInfo, Envelope]:
        change = ApiKeyCreated(key_id=new_key.key_id, org_id=org_id, name=name, role=role, expires_at=expires_at)
        async with translated(), self._pool.acquire() as conn, conn.transaction():
            envelope = await self._record(conn, change, actor, reason, now)
            row = await conn.fetchrow(
                f"INSERT INTO api_keys (key_id, name, role, org_id, secret_hash, created_at, created_by, expires_at) "
                f"VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING {_COLUMNS}",
                new_key.key_id, name, role.value, org_id, new_key.secret_hash, now, actor.id, expires_at,
            )
        return _info(row), envelope

    async def revoke(self, key_id: str, *, actor: Actor, reason: str, now: datetime) -> tuple[KeyInfo, Envelope | None]:
        """Revoke; revoking an already revoked key changes nothing (no event)."""
        async with translated(), self._pool.acquire() as conn, conn.transaction():
            info = await self._locked(conn, key_id)
            if info.revoked_at is not None:
                return info, None
            envelope = await self._record(conn, ApiKeyRevoked(key_id=key_id, org_id=info.org_id), actor, reason, now)
            row = await conn.fetchrow(
                f"UPDATE api_keys SET revoked_at = $2 WHERE key_id = $1 RETURNING {_COLUMNS}", key_id, now
            )
        return _info(row), envelope

    async def set_expiry(
        self, key_id: str, expires_at: datetime | None, *, actor: Actor, reason: str, now: datetime
    ) -> tuple[KeyInfo, Envelope | None]:
        async with translated(), self._pool.acquire() as conn, conn.transaction():
            info = await self._locked(conn, key_id)
            if info.revoked_at is not None or info.expires_at == expires_at:
                return info, None
            change = ApiKeyExpirySet(key_id=key_id, org_id=info.org_id, expires_at=expires_at)
            envelope = await self._record(conn, change, actor, reason, now)
            row = await conn.fetchrow(
                f"UPDATE api_keys SET expires_at = $2 WHERE key_id = $1 RETURNING {_COLUMNS}", key_id, expires_at
            )
        return _info(row), envelope

    async def get(self, key_id: str) -> KeyInfo | None:
        async with translated():
            row = await self._pool.fetchrow(f"SELECT {_COLUMNS} FROM api_keys WHERE key_id = $1", key_id)
        return None if row is None else _info(row)

    async def list(self, *, org_id: str | None) -> list[KeyInfo]:
        """One org's keys, or every key when `org_id` is None."""
        async with translated():
            rows = await self._pool.fetch(
                f"SELECT {_COLUMNS} FROM api_keys WHERE $1::text IS NULL OR org_id = $1 ORDER BY created_at",
                org_id,
            )
        return [_info(r) for r in rows]

    async def _locked(self, conn: asyncpg.Connection, key_id: str) -> KeyInfo:
        row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM api_keys WHERE key_id = $1 FOR UPDATE", key_id)
        if row is None:
            raise UnknownKey(key_id)
        return _info(row)

    async def _record(
        self, conn: asyncpg.Connection, change: KeyChange, actor: Actor, reason: str, now: datetime
    ) -> Envelope:
        await set_tenancy(conn, writer_for([change]))
        head = await read_head(conn, key_stream(change.key_id))
        (envelope,) = await write_events(conn, [change], head, actor=actor, reason=reason, occurred_at=now)
        return envelope


def _info(row: asyncpg.Record) -> KeyInfo:
    return KeyInfo(**{**dict(row), "role": Role(row["role"])})
