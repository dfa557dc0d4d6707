"""`python -m services.command`: serve the command API with granian's embedded server.

Embedded (in-process, one worker) rather than granian's process manager, so the
service is a single process: SIGTERM drains it through the ASGI lifespan, and a
SIGKILL cannot leave an orphaned worker holding the port and the relay lock.
"""

from __future__ import annotations

import asyncio
import signal
import sys

from granian.constants import Interfaces
from granian.server.embed import Server

from services.command.bootstrap import build_app
from services.infra.settings import Settings
from services.observability import tracing
from services.observability.logs import configure_logging


async def serve(settings: Settings) -> int:
    server = Server(
        build_app(settings),
        address=settings.command_host,
        port=settings.command_port,
        interface=Interfaces.ASGI,
        log_access=False,
    )
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, server.stop)
    await server.serve()
    return 1 if server.interrupt_children else 0  # a worker died, e.g. its lifespan failed


def main() -> None:
    settings = Settings()
    configure_logging(settings.log_format)
    tracing.configure("flagstream-command")  # off unless OTEL_TRACES_EXPORTER / OTEL_EXPORTER_OTLP_ENDPOINT say
    try:
        code = asyncio.run(serve(settings))
    finally:
        tracing.shutdown()  # export the spans still pending
    sys.exit(code)


if __name__ == "__main__":
    main()
