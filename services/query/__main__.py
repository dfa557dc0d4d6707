"""`python -m services.query`: serve the query API with granian, two workers on uvloop.

On RSGI with the OFREP fast path (`services.query.rsgi`); with
`FLAGS_QUERY_FAST_PATH=false`, the FastAPI app alone on ASGI. Measured beside
Unleash Edge (bench/README.md): uvloop rather than asyncio's loop served a third
more OFREP requests; two workers (each with its own caches and invalidation
subscription) about half as many again, with lower p99s. The loop is named here,
not left to granian's `auto`, so the choice is this service's.
"""

from __future__ import annotations

from granian import Granian
from granian.constants import Interfaces, Loops

from services.infra.settings import Settings


def serve(
    rsgi_factory: str = "services.query.rsgi:app_from_env", asgi_factory: str = "services.query.app:app_from_env"
) -> None:
    """Serve one of two app factories (import paths, for granian), as the settings choose."""
    settings = Settings()
    fast = settings.query_fast_path
    Granian(
        rsgi_factory if fast else asgi_factory,
        factory=True,
        address=settings.query_host,
        port=settings.query_port,
        interface=Interfaces.RSGI if fast else Interfaces.ASGI,
        workers=2,
        loop=Loops.uvloop,
    ).serve()


if __name__ == "__main__":
    serve()
