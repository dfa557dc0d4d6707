"""A webhook guard: a disabled platform's webhook is acknowledged with 200 and dropped.

Answering 4xx/5xx would make the sender retry (for days, on some ad platforms);
a 200 with `{"status": "dropped"}` ends it, and the drop is logged.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi.responses import JSONResponse

from events import Platform
from flagsdk.client import FlagClient

log = logging.getLogger("flagsdk.webhooks")
Handler = Callable[..., Awaitable[Any]]


def platform_webhook(
    client: FlagClient, *, platform: Platform | str | None = None, platform_param: str = "platform"
) -> Callable[[Handler], Handler]:
    """Decorate an async route handler; the platform is fixed, or the handler's `platform_param` argument."""

    def decorate(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def guarded(*args: Any, **kwargs: Any) -> Any:
            name = str(platform if platform is not None else kwargs[platform_param])
            if name in _PLATFORMS and client.is_platform_enabled(name):
                return await handler(*args, **kwargs)
            log.info("dropping webhook for %s: the platform is off (or unknown) for org %s", name, client.org_id)
            return JSONResponse({"status": "dropped", "platform": name}, status_code=200)

        return guarded

    return decorate


_PLATFORMS = frozenset(p.value for p in Platform)
