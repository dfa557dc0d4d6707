"""The one translation of asyncpg's (and the socket's) failures into the command side's own errors.

Every adapter over the command role's database runs its statements inside `translated()`:
a failure to reach or keep a connection becomes `StoreUnavailable` (a 503, "retry later");
anything else (a constraint, a bug) passes unchanged.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg

from services.command.errors import StoreUnavailable

# OperatorInterventionError covers an administrator's shutdown and CannotConnectNowError (starting up);
# InterfaceError a connection closed under an operation.
UNAVAILABLE: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.InsufficientResourcesError,
)


@asynccontextmanager
async def translated() -> AsyncIterator[None]:
    """Connection-level failures become `StoreUnavailable`; everything else passes."""
    try:
        yield
    except UNAVAILABLE as exc:
        raise StoreUnavailable(f"PostgreSQL unavailable: {exc.__class__.__name__}: {exc}") from exc
