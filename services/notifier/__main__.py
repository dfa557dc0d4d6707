"""`python -m services.notifier`: run the notifier until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import logging
import signal

from services.infra.settings import Settings
from services.notifier.bootstrap import run


async def _main() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await run(Settings(), stop)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    asyncio.run(_main())


if __name__ == "__main__":
    main()
