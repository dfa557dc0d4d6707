"""Create the roles and the database, then apply `migrations/*.sql` in order.

Run with a superuser URL once per cluster; migrations run as the owner role,
so the tables belong to a role that row-level security still binds (FORCE).
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import asyncpg

from services.infra.settings import Role, Settings

log = logging.getLogger(__name__)
MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"


async def provision(settings: Settings) -> None:
    admin = await asyncpg.connect(settings.pg_admin_dsn())
    try:
        for role in Role:
            password = getattr(settings, f"pg_password_{role.value}")
            exists = await admin.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", role.value)
            verb = "ALTER" if exists else "CREATE"
            await admin.execute(
                f'{verb} ROLE "{role.value}" LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE '
                f"PASSWORD '{password.replace(chr(39), chr(39) * 2)}'"
            )
        if not await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", settings.pg_database):
            log.info("creating database %s", settings.pg_database)
            await admin.execute(f'CREATE DATABASE "{settings.pg_database}" OWNER "{Role.OWNER.value}"')
    finally:
        await admin.close()
    await migrate(settings)


async def migrate(settings: Settings) -> list[str]:
    """Apply the migrations not yet applied; returns their names."""
    conn = await asyncpg.connect(settings.pg_dsn(Role.OWNER))
    try:
        await conn.execute("REVOKE ALL ON SCHEMA public FROM PUBLIC")
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations "
            "(name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        for role in (Role.COMMAND, Role.PROJECTOR, Role.QUERY, Role.NOTIFIER):
            await conn.execute(f'GRANT USAGE ON SCHEMA public TO "{role.value}"')
        applied = {r["name"] for r in await conn.fetch("SELECT name FROM schema_migrations")}
        done = []
        for path in sorted(MIGRATIONS.glob("*.sql")):
            if path.name in applied:
                continue
            async with conn.transaction():
                await conn.execute(path.read_text())
                await conn.execute("INSERT INTO schema_migrations (name) VALUES ($1)", path.name)
            log.info("applied migration %s", path.name)
            done.append(path.name)
        return done
    finally:
        await conn.close()


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    asyncio.run(provision(Settings()))


if __name__ == "__main__":
    main()
