"""`PostgresKeyStore` in memory: the key rows and the events the store writes with them.

The services have no in-memory key store; this one, kept with the tests, passes the same
contract as `PostgresKeyStore` (tests/contract/test_key_store.py). Its events are sealed by
the `chain.seal_changes` that the Postgres store's `write_events` calls, each key's onto its own stream.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from events import Actor, ApiKeyCreated, ApiKeyExpirySet, ApiKeyRevoked, Envelope, KeyChange
from flagcore import StreamHead
from services.auth.keys import NewKey
from services.auth.policy import Role
from services.command import chain
from services.command.errors import UnknownKey
from services.command.ports import KeyInfo


class MemoryKeyStore:
    def __init__(self) -> None:
        self.keys: dict[str, KeyInfo] = {}
        self.secret_hashes: dict[str, str] = {}
        self.events: list[Envelope] = []  # what the Postgres store appends to the log
        self._heads: dict[str, StreamHead] = {}

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
        envelope = self._record(change, actor, reason, now)
        info = KeyInfo(
            key_id=new_key.key_id, name=name, role=role, org_id=org_id, created_at=now, created_by=actor.id,
            expires_at=expires_at, revoked_at=None, last_used_at=None,
        )  # fmt: skip
        self.keys[info.key_id] = info
        self.secret_hashes[info.key_id] = new_key.secret_hash
        return info, envelope

    async def revoke(self, key_id: str, *, actor: Actor, reason: str, now: datetime) -> tuple[KeyInfo, Envelope | None]:
        info = self._existing(key_id)
        if info.revoked_at is not None:
            return info, None
        envelope = self._record(ApiKeyRevoked(key_id=key_id, org_id=info.org_id), actor, reason, now)
        self.keys[key_id] = replace(info, revoked_at=now)
        return self.keys[key_id], envelope

    async def set_expiry(
        self, key_id: str, expires_at: datetime | None, *, actor: Actor, reason: str, now: datetime
    ) -> tuple[KeyInfo, Envelope | None]:
        info = self._existing(key_id)
        if info.revoked_at is not None or info.expires_at == expires_at:
            return info, None
        change = ApiKeyExpirySet(key_id=key_id, org_id=info.org_id, expires_at=expires_at)
        envelope = self._record(change, actor, reason, now)
        self.keys[key_id] = replace(info, expires_at=expires_at)
        return self.keys[key_id], envelope

    async def get(self, key_id: str) -> KeyInfo | None:
        return self.keys.get(key_id)

    async def list(self, *, org_id: str | None) -> list[KeyInfo]:
        found = [k for k in self.keys.values() if org_id is None or k.org_id == org_id]
        return sorted(found, key=lambda k: k.created_at)

    def _existing(self, key_id: str) -> KeyInfo:
        info = self.keys.get(key_id)
        if info is None:
            raise UnknownKey(key_id)
        return info

    def _record(self, change: KeyChange, actor: Actor, reason: str, now: datetime) -> Envelope:
        head = self._heads.get(change.stream, chain.EMPTY_HEAD)
        sequence = len(self.events) + 1
        (envelope,) = chain.seal_changes(
            [change], head, sequences=[sequence], actor=actor, reason=reason, occurred_at=now
        )
        self._heads[change.stream] = StreamHead(envelope.version, envelope.hash, envelope.new)
        self.events.append(envelope)
        return envelope
