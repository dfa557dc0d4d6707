"""What counts as PostgreSQL being out of reach, defined once for every adapter (a 503, never a 500).

Its own module so that adapters under the architecture contracts (which may not name the pools in
`services.infra.postgres`) can share it.
"""

from __future__ import annotations

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
