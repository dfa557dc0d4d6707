"""The bootstrap system-admin key of a host: `python -m services.command.admin_key`.

`scripts/up` runs it so that `flagctl` works out of the box: it creates a
system-admin key (an ApiKeyCreated event like any other) the first time, and
keeps it in a file only the current user can read. Run again, it keeps a key
that still works and replaces one that was revoked or expired.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from datetime import UTC, datetime
from pathlib import Path

from events import Actor
from services.auth.authenticator import Authenticator, Unauthenticated
from services.auth.keys import generate
from services.auth.policy import Role
from services.auth.postgres import PostgresKeyLookup
from services.command.key_store import PostgresKeyStore
from services.infra.postgres import create_pool
from services.infra.settings import Role as DbRole
from services.infra.settings import Settings

BOOTSTRAP = Actor(id="bootstrap", name="bootstrap")


def default_key_file() -> Path:
    configured = os.environ.get("FLAGS_ADMIN_KEY_FILE")
    return Path(configured) if configured else Path.home() / ".config" / "flagstream" / "admin.key"


async def create_key(
    settings: Settings, *, role: Role, name: str, org_id: str | None = None, reason: str = "created by setup"
) -> str:
    """Create a key directly in the store (bootstrap and tests); returns the key itself."""
    pool = await create_pool(settings, DbRole.COMMAND, min_size=1, max_size=1)
    try:
        new_key = generate()
        await PostgresKeyStore(pool).create(
            new_key, name=name, role=role, org_id=org_id, expires_at=None,
            actor=BOOTSTRAP, reason=reason, now=datetime.now(UTC),
        )
        return new_key.token
    finally:
        await pool.close()


async def ensure_admin_key(settings: Settings, path: Path) -> tuple[str, bool]:
    """The working key in `path`, creating (and writing) a new one if needed; (key, created)."""
    if path.exists():
        token = path.read_text().strip()
        pool = await create_pool(settings, DbRole.COMMAND, min_size=1, max_size=1)
        try:
            await Authenticator(PostgresKeyLookup(pool), touch_every=float("inf")).authenticate(f"Bearer {token}")
            return token, False
        except Unauthenticated:
            pass
        finally:
            await pool.close()
    token = await create_key(
        settings, role=Role.SYSTEM_ADMIN, name=f"bootstrap admin ({os.uname().nodename})",
        reason="bootstrap system-admin key for this host",
    )
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(token + "\n")
    os.chmod(path, 0o600)
    return token, True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--file", type=Path, default=default_key_file())
    args = parser.parse_args()
    _, created = asyncio.run(ensure_admin_key(Settings(), args.file))
    print(f"{'created' if created else 'kept'} the bootstrap system-admin key in {args.file} (mode 600)")


if __name__ == "__main__":
    main()
