"""The query service's FastAPI app alone on granian's ASGI interface: `bench.ofrep`'s point of comparison.

    FLAGS_...=... .venv/bin/python -m bench.query_asgi

The same app, use cases and adapters as `python -m services.query` (`services.query.bootstrap`),
without the product's HTTP server and the evaluation hot path in front of it, so every request
goes through FastAPI's routing: the difference between the two is the cost of those layers.
The same worker count and event loop (uvloop). It lives in bench/ so that no service ships it.
"""

from __future__ import annotations

import os

from granian import Granian
from granian.constants import Interfaces, Loops

from services.infra.settings import Settings


def serve(factory: str = "services.query.bootstrap:app_from_env") -> None:
    """Serve the ASGI app that `factory` (an import path) makes, in each worker."""
    settings = Settings()
    Granian(
        factory,
        factory=True,
        address=settings.query_host,
        port=settings.query_port,
        interface=Interfaces.ASGI,
        workers=settings.query_workers or len(os.sched_getaffinity(0)),
        loop=Loops.uvloop,
    ).serve()


if __name__ == "__main__":
    serve()
