"""Fixtures: real servers for integration tests, one isolated database and topic per use."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterator

import asyncpg
import pytest

from events import KeyRole
from services.command.admin_key import create_key
from services.infra.kafka import ensure_topics
from services.infra.provision import provision
from services.infra.sealing import new_key
from services.infra.settings import Settings
from tests.support.auth import register_admin_key
from tests.support.processes import free_port
from tests.support.servers import Servers, real_servers
from tests.support.stack import Stack, start_stack

SUBSCRIPTION_KEY = new_key()  # seals the test subscriptions' secrets; the notifier processes get it too


@pytest.fixture(scope="session")
def servers() -> Iterator[Servers]:
    with real_servers() as found:
        yield found


@pytest.fixture(scope="session")
def make_settings(servers: Servers) -> Iterator[Callable[[], Settings]]:
    """Settings for a fresh, provisioned database and fresh topics (dropped at the end)."""
    made: list[Settings] = []

    def make() -> Settings:
        run = uuid.uuid4().hex[:10]
        settings = Settings(
            pg_admin_url=servers.pg_admin_url,
            pg_host=servers.pg_host,
            pg_port=servers.pg_port,
            pg_database=f"flags_test_{run}",
            kafka_bootstrap=servers.kafka_bootstrap,
            topic=f"test.{run}.changes",
            dead_letter_topic=f"test.{run}.changes.dlq",
            projector_group=f"test-{run}-projector",
            notifier_group=f"test-{run}-notifier",
            redis_url=servers.redis_url,
            redis_prefix=f"test-{run}",
            command_port=free_port(),
            query_port=free_port(),
            projector_port=free_port(),
            notifier_port=free_port(),
            # Tests write in tight loops with one admin key; the per-key write rate has its own tests.
            command_rate_per_second=10_000.0,
            command_rate_burst=10_000,
            subscription_key=SUBSCRIPTION_KEY,
        )
        asyncio.run(provision(settings))
        asyncio.run(ensure_topics(settings))
        token = asyncio.run(create_key(settings, role=KeyRole.SYSTEM_ADMIN, name="test admin", reason="test setup"))
        register_admin_key(settings.pg_database, token)
        made.append(settings)
        return settings

    yield make
    asyncio.run(_drop_databases(servers.pg_admin_url, [s.pg_database for s in made]))


async def _drop_databases(admin_url: str, names: list[str]) -> None:
    conn = await asyncpg.connect(admin_url)
    try:
        for name in names:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def settings(make_settings: Callable[[], Settings]) -> Settings:
    """The database and topics shared by integration tests that use distinct org ids."""
    return make_settings()


@pytest.fixture(scope="session")
def stack(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """All three services running against `settings`."""
    running = start_stack(settings, tmp_path_factory.mktemp("logs"))
    yield running
    running.stop()


@pytest.fixture
def org_id() -> str:
    """A fresh organisation id, so tests sharing a database never see each other's rows."""
    return f"org-{uuid.uuid4().hex[:12]}"
