"""`python -m services.query`: serve the query API with granian (ASGI, one worker)."""

from __future__ import annotations

from granian import Granian
from granian.constants import Interfaces

from services.infra.settings import Settings


def main() -> None:
    settings = Settings()
    Granian(
        "services.query.fastpath:app_from_env",
        factory=True,
        address=settings.query_host,
        port=settings.query_port,
        interface=Interfaces.ASGI,
        workers=1,
    ).serve()


if __name__ == "__main__":
    main()
