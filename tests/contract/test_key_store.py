"""The command side's key store (services/command/key_store.py): one contract, run on the in-memory store and on
PostgreSQL.

A key's row and its event are one write: creating, revoking or changing the expiry of a key
returns the key as now stored and the event on the key's own stream (none when nothing changed).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta

import pytest
import pytest_asyncio

from events import GENESIS_HASH, Actor, Envelope
from services.auth.keys import generate
from services.auth.policy import Role
from services.command.errors import UnknownKey
from services.command.key_store import PostgresKeyStore
from services.command.ports import KeyInfo, KeyStore
from services.infra.postgres import create_pool
from services.infra.settings import Role as DatabaseRole
from services.infra.settings import Settings
from tests.support.key_store import MemoryKeyStore
from tests.support.names import fresh_org

ADMIN = Actor(id="key-admin", name="admin")
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


async def create(
    store: KeyStore, org_id: str | None, *, role: Role = Role.EVALUATOR, at: datetime = T0,
    expires_at: datetime | None = None,
) -> tuple[KeyInfo, Envelope]:  # fmt: skip
    return await store.create(
        generate(), name=f"{role} of {org_id}", role=role, org_id=org_id, expires_at=expires_at,
        actor=ADMIN, reason="contract test", now=at,
    )  # fmt: skip


class KeyStoreContract:
    """Subclass with a `store` fixture; every test uses orgs of its own."""

    async def test_a_created_key_is_stored_as_asked_and_its_event_opens_its_stream(self, store: KeyStore) -> None:
        org, expiry = fresh_org(), T0 + timedelta(days=30)
        info, event = await create(store, org, role=Role.ORG_ADMIN, expires_at=expiry)
        assert (info.name, info.role, info.org_id, info.expires_at) == (f"{Role.ORG_ADMIN} of {org}", Role.ORG_ADMIN,
                                                                        org, expiry)  # fmt: skip
        assert (info.created_at, info.created_by, info.revoked_at, info.last_used_at) == (T0, ADMIN.id, None, None)
        assert await store.get(info.key_id) == info
        assert (event.type, event.stream, event.version, event.prev_hash) == (
            "ApiKeyCreated", f"key/{info.key_id}", 1, GENESIS_HASH
        )
        assert (event.org_id, event.actor, event.reason, event.occurred_at) == (org, ADMIN, "contract test", T0)
        assert event.new == {"name": info.name, "role": "org-admin", "org_id": org,
                             "expires_at": "2026-03-31T12:00:00Z", "revoked": False}  # fmt: skip

    async def test_revoking_stamps_the_time_once_and_chains_its_event(self, store: KeyStore) -> None:
        info, created = await create(store, fresh_org())
        later = T0 + timedelta(hours=1)
        revoked, event = await store.revoke(info.key_id, actor=ADMIN, reason="leaked", now=later)
        assert revoked.revoked_at == later and revoked.key_id == info.key_id
        assert event is not None
        assert (event.type, event.version, event.reason) == ("ApiKeyRevoked", 2, "leaked")
        assert event.prev_hash == created.hash
        assert event.sequence > created.sequence
        again, nothing = await store.revoke(info.key_id, actor=ADMIN, reason="again", now=later + timedelta(hours=1))
        assert (again, nothing) == (revoked, None)
        assert await store.get(info.key_id) == revoked

    async def test_an_expiry_change_is_an_event_and_the_same_expiry_or_a_revoked_key_none(
        self, store: KeyStore
    ) -> None:
        info, _ = await create(store, fresh_org())
        expiry = T0 + timedelta(days=7)
        changed, event = await store.set_expiry(info.key_id, expiry, actor=ADMIN, reason="a week", now=T0)
        assert changed.expires_at == expiry and event is not None
        assert (event.type, event.version, event.new["expires_at"]) == ("ApiKeyExpirySet", 2, "2026-03-08T12:00:00Z")
        same, nothing = await store.set_expiry(info.key_id, expiry, actor=ADMIN, reason="again", now=T0)
        assert (same, nothing) == (changed, None)
        cleared, event = await store.set_expiry(info.key_id, None, actor=ADMIN, reason="forever", now=T0)
        assert cleared.expires_at is None and event is not None and event.version == 3

        revoked, _ = await store.revoke(info.key_id, actor=ADMIN, reason="done", now=T0)
        after, nothing = await store.set_expiry(info.key_id, expiry, actor=ADMIN, reason="too late", now=T0)
        assert (after, nothing) == (revoked, None)

    async def test_an_unknown_key_is_not_found_and_cannot_change(self, store: KeyStore) -> None:
        missing = generate().key_id
        assert await store.get(missing) is None
        with pytest.raises(UnknownKey):
            await store.revoke(missing, actor=ADMIN, reason="no", now=T0)
        with pytest.raises(UnknownKey):
            await store.set_expiry(missing, None, actor=ADMIN, reason="no", now=T0)

    async def test_keys_are_listed_per_org_in_creation_order_and_all_of_them_without_one(
        self, store: KeyStore
    ) -> None:
        org, other = fresh_org(), fresh_org()
        second, _ = await create(store, org, at=T0 + timedelta(minutes=2))
        first, _ = await create(store, org, role=Role.AUDITOR, at=T0 + timedelta(minutes=1))
        theirs, _ = await create(store, other, at=T0 + timedelta(minutes=3))
        system, _ = await create(store, None, role=Role.SYSTEM_ADMIN, at=T0 + timedelta(minutes=4))
        assert await store.list(org_id=org) == [first, second]
        assert await store.list(org_id=other) == [theirs]
        mine = {first.key_id, second.key_id, theirs.key_id, system.key_id}
        everything = [k for k in await store.list(org_id=None) if k.key_id in mine]
        assert everything == [first, second, theirs, system]


class TestMemoryKeyStore(KeyStoreContract):
    @pytest.fixture
    def store(self) -> MemoryKeyStore:
        return MemoryKeyStore()


@pytest.fixture(scope="module")
def key_store_settings(make_settings: Callable[[], Settings]) -> Settings:
    """A database of its own: the keys' events go to its outbox, which no other test then finds."""
    return make_settings()


@pytest_asyncio.fixture(scope="module")
async def postgres_key_store(key_store_settings: Settings) -> AsyncIterator[PostgresKeyStore]:
    pool = await create_pool(key_store_settings, DatabaseRole.COMMAND, min_size=1, max_size=2)
    yield PostgresKeyStore(pool)
    await pool.close()


@pytest.mark.integration
class TestPostgresKeyStore(KeyStoreContract):
    @pytest.fixture
    def store(self, postgres_key_store: PostgresKeyStore) -> PostgresKeyStore:
        return postgres_key_store
