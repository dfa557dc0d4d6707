"""asyncpg's pool, failing to reopen connections while Postgres is down, is said once a minute, not per retry."""

from __future__ import annotations

import logging
import sys

import asyncpg
import pytest

from services.infra.pg_errors import FLOOR_RETRY, QuietFloorRetries, quiet_pool_floor_retries


def _retry(failure: BaseException) -> logging.LogRecord:
    try:
        raise failure
    except BaseException:
        info = sys.exc_info()
    return logging.LogRecord("asyncpg.pool", logging.WARNING, __file__, 1, FLOOR_RETRY + "; retrying", (), info)


def test_an_outage_is_one_line_a_minute_without_its_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = iter([100.0, 101.0, 159.0, 161.0])
    monkeypatch.setattr("services.infra.pg_errors.time.monotonic", lambda: next(clock))
    quiet = QuietFloorRetries()
    refused = [_retry(asyncpg.exceptions.TooManyConnectionsError("too many")) for _ in range(3)]
    refused.append(_retry(ConnectionRefusedError(111, "refused")))
    kept = [record for record in refused if quiet.filter(record)]
    assert kept == [refused[0], refused[3]]
    assert all(r.exc_info is None for r in kept)
    assert "TooManyConnectionsError" in kept[0].getMessage() and "once a minute" in kept[0].getMessage()


def test_another_failure_and_other_messages_keep_their_traceback() -> None:
    quiet = QuietFloorRetries()
    bug = _retry(asyncpg.exceptions.UndefinedTableError("no such table"))
    assert quiet.filter(bug) and bug.exc_info is not None
    other = logging.LogRecord("asyncpg.pool", logging.WARNING, __file__, 1, "something else", (), None)
    assert quiet.filter(other)


def test_installed_once() -> None:
    quiet_pool_floor_retries()
    quiet_pool_floor_retries()
    assert sum(isinstance(f, QuietFloorRetries) for f in logging.getLogger("asyncpg.pool").filters) == 1
