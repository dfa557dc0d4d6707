"""The Postgres key lookup: a store out of reach is `KeyStoreUnavailable` (a 503), logged when it starts and ends."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from services.auth.authenticator import KeyStoreUnavailable
from services.auth.postgres import PostgresKeyLookup


class FlakyPool:
    """Answers `fetchrow` with no row, or refuses the connection while `down`."""

    def __init__(self) -> None:
        self.down = False

    async def fetchrow(self, *_: Any) -> None:
        if self.down:
            raise ConnectionRefusedError(111, "Connect call failed ('127.0.0.1', 55432)")
        return None


async def test_an_unreachable_store_is_key_store_unavailable_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    pool = FlakyPool()
    lookup = PostgresKeyLookup(pool)  # type: ignore[arg-type]
    pool.down = True
    with caplog.at_level(logging.WARNING, logger="services.auth.postgres"):
        for _ in range(3):
            with pytest.raises(KeyStoreUnavailable):
                await lookup.find_key("k1")
        pool.down = False
        assert await lookup.find_key("k1") is None
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2
    assert "unreachable" in messages[0] and "reachable again" in messages[1]
    assert all(r.exc_info is None for r in caplog.records)  # no traceback per request


async def test_other_driver_errors_pass_unchanged() -> None:
    class Broken(FlakyPool):
        async def fetchrow(self, *_: Any) -> None:
            raise ValueError("a bug, not an outage")

    with pytest.raises(ValueError):
        await PostgresKeyLookup(Broken()).find_key("k1")  # type: ignore[arg-type]
