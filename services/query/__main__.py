"""`python -m services.query`: serve the query API, a worker process per CPU (`FLAGS_QUERY_WORKERS`) on uvloop.

On the product's own HTTP server (`services.httpserver`) with the evaluation
hot path (`services.query.site`). Measured beside Unleash Edge (bench/README.md):
two workers, each with its own caches and invalidation subscription, served
about half as many requests again as one, with lower p99s.
"""

from __future__ import annotations

import os

from services.httpserver import serve as serve_http
from services.infra.settings import Settings
from services.observability import multiprocess
from services.observability.logs import configure_logging
from services.query.fastpath import security_headers


def serve(site_factory: str = "services.query.site:site_from_env") -> None:
    """Serve the site that `site_factory` (an import path) makes, in each worker.

    The workers' metrics add up in a directory made for this start (`services.observability.multiprocess`),
    so whichever worker answers `/metrics` shows them all.
    """
    settings = Settings()
    workers = settings.query_workers or len(os.sched_getaffinity(0))
    # configured before the workers are forked, so the supervisor's lines (a worker died, the port is taken) show
    configure_logging(settings.log_format)
    metrics_dir = multiprocess.prepare("query")
    try:
        serve_http(
            site_factory,
            host=settings.query_host,
            port=settings.query_port,
            workers=workers,
            headers=security_headers(),
        )
    finally:
        multiprocess.remove(metrics_dir)


if __name__ == "__main__":
    serve()
