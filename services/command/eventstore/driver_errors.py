"""The one translation of asyncpg's (and the socket's) failures into the command side's own errors.

Every adapter over the command role's database runs its statements inside `translated()`:
a failure to reach or keep a connection becomes `StoreUnavailable` (a 503, "retry later");
anything else (a constraint, a bug) passes unchanged.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from services.command.errors import StoreUnavailable
from services.infra.pg_errors import UNREACHABLE


@asynccontextmanager
async def translated() -> AsyncIterator[None]:
    """Connection-level failures become `StoreUnavailable`; everything else passes."""
    try:
        yield
    except UNREACHABLE as exc:
        raise StoreUnavailable(f"PostgreSQL unavailable: {exc.__class__.__name__}: {exc}") from exc
