"""`python -m services.query`: serve the query API with granian, one worker.

On RSGI with the OFREP fast path (`services.query.rsgi`); with
`FLAGS_QUERY_FAST_PATH=false`, the FastAPI app alone on ASGI.
"""

from __future__ import annotations

from granian import Granian
from granian.constants import Interfaces

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
        workers=1,
    ).serve()


if __name__ == "__main__":
    serve()
