"""`python -m services.notifier`: run the notifier until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import signal

from services.infra.settings import Settings
from services.notifier.bootstrap import run
from services.observability.logs import configure_logging


async def _main(settings: Settings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await run(settings, stop)


def main() -> None:
    settings = Settings()
    configure_logging(settings.log_format)
    asyncio.run(_main(settings))


if __name__ == "__main__":
    main()
