"""`python -m services.projector`: run the projector until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import gc

from services.infra.settings import Settings
from services.observability import tracing
from services.observability.logs import configure_logging
from services.projector.bootstrap import build_app


def main() -> None:
    settings = Settings()
    configure_logging(settings.log_format)
    # A batch allocates hundreds of thousands of short-lived, acyclic objects (freed by reference
    # counting); the default thresholds would run the cycle collector thousands of times per batch
    # over a large, long-lived heap (the stream-head cache). Measured: about 30% more events/s.
    gc.set_threshold(100_000, 50, 100)
    tracing.configure("flagstream-projector")  # off unless OTEL_TRACES_EXPORTER / OTEL_EXPORTER_OTLP_ENDPOINT say
    try:
        asyncio.run(build_app(settings).run())
    finally:
        tracing.shutdown()  # export the spans still pending


if __name__ == "__main__":
    main()
