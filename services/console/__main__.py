"""`python -m services.console`: serve the admin console with granian (ASGI, one worker)."""

from __future__ import annotations

from granian import Granian
from granian.constants import Interfaces

from services.infra.settings import Settings


def main() -> None:
    settings = Settings()
    Granian(
        "services.console.bootstrap:app_from_env",
        factory=True,
        address=settings.console_host,
        port=settings.console_port,
        interface=Interfaces.ASGI,
        workers=1,
    ).serve()


if __name__ == "__main__":
    main()
