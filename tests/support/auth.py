"""Keys for tests: an in-memory `KeyLookup` (a fake of our own port) and ready-made principals."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from services.auth.authenticator import Authenticator, KeyRecord, KeyStoreUnavailable
from services.auth.http import AuthGate
from services.auth.keys import generate
from services.auth.policy import Role
from services.infra.settings import Settings


@dataclass
class MemoryKeys:
    """Holds key records by id; `issue` returns a real key whose hash it stores."""

    records: dict[str, KeyRecord] = field(default_factory=dict)
    touched: list[str] = field(default_factory=list)
    down: bool = False  # the store is out of reach: lookups raise `KeyStoreUnavailable`, as the Postgres one does

    def issue(self, role: Role, org_id: str | None = None, *, name: str | None = None,
              expires_at: datetime | None = None) -> str:
        new = generate()
        self.records[new.key_id] = KeyRecord(
            key_id=new.key_id, name=name or f"{role}-{org_id or 'all'}", role=role, org_id=org_id,
            secret_hash=new.secret_hash, expires_at=expires_at, revoked_at=None,
        )
        return new.token

    async def find_key(self, key_id: str) -> KeyRecord | None:
        if self.down:
            raise KeyStoreUnavailable("PostgreSQL unavailable: ConnectionRefusedError")
        return self.records.get(key_id)

    async def touch_key(self, key_id: str, at: datetime) -> None:
        self.touched.append(key_id)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def memory_gate(keys: MemoryKeys) -> AuthGate:
    return AuthGate(Authenticator(keys, ttl=0.0))


_ADMIN_KEYS: dict[str, str] = {}


def register_admin_key(database: str, token: str) -> None:
    _ADMIN_KEYS[database] = token


def admin_key(settings: Settings) -> str:
    """The system-admin key `make_settings` created in this settings' database."""
    return _ADMIN_KEYS[settings.pg_database]


def admin_headers(settings: Settings) -> dict[str, str]:
    return bearer(admin_key(settings))
