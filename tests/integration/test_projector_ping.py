"""The projector's Postgres ping, behind its `/readyz`: True while the database answers, False once it cannot."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from services.infra.settings import Settings
from services.projector.store import PostgresStore, create_projector_pool

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def db(make_settings: Callable[[], Settings]) -> Settings:
    return make_settings()


async def test_the_ping_answers_while_postgres_does_and_not_after(db: Settings) -> None:
    pool = await create_projector_pool(db)
    store = PostgresStore(pool, db.projector_group)
    try:
        assert await store.ping() is True
    finally:
        await pool.close()
    assert await store.ping() is False
