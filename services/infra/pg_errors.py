"""What counts as PostgreSQL being out of reach, defined once for every adapter (a 503, never a 500).

Its own module so that adapters under the architecture contracts (which may not name the pools in
`services.infra.postgres`) can share it.
"""

from __future__ import annotations

import logging
import math
import time

import asyncpg

# A failure to reach or keep a connection, as opposed to a constraint or a bug: the store is unavailable,
# and the caller is told to retry (a 503 with `Retry-After`). OperatorInterventionError covers an
# administrator's shutdown and CannotConnectNowError (starting up); InterfaceError a connection closed
# under an operation.
UNREACHABLE: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.InsufficientResourcesError,
)


FLOOR_RETRY = "Failed to restore the pool connection floor"  # asyncpg.pool's warning, with a traceback, per retry


class QuietFloorRetries(logging.Filter):
    """While Postgres is out of reach, asyncpg's pool logs a traceback at every retry to reopen its minimum
    connections (several a second per pool and worker): one line a minute says the same. Any other failure
    of that kind keeps its traceback."""

    def __init__(self, every: float = 60.0) -> None:
        super().__init__()
        self._every = every
        self._last = -math.inf

    def filter(self, record: logging.LogRecord) -> bool:
        if not str(record.msg).startswith(FLOOR_RETRY):
            return True
        failure = record.exc_info[1] if record.exc_info else None
        if not isinstance(failure, UNREACHABLE):
            return True
        now = time.monotonic()
        if now - self._last < self._every:
            return False
        self._last = now
        record.msg, record.args = "%s: %r (said once a minute while it lasts)", (FLOOR_RETRY, failure)
        record.exc_info, record.exc_text = None, None
        return True


def quiet_pool_floor_retries() -> None:
    """Install `QuietFloorRetries` on asyncpg's pool logger, once per process."""
    logger = logging.getLogger("asyncpg.pool")
    if not any(isinstance(f, QuietFloorRetries) for f in logger.filters):
        logger.addFilter(QuietFloorRetries())
