"""What the console's routes use, in one typed object, and the accessor that hands it out.

`Wiring` is made with the app (`app.create_app`) and connected by the composition root
(`bootstrap`) when the lifespan starts, or at once by a test that hands in a session store
and a fake `Api`. Starlette has no dependency injection: a route asks `wired(request)`,
the one reader of `app.state.wiring`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from starlette.applications import Starlette
from starlette.requests import Request

from services.console.broadcast import Broadcaster
from services.console.ports import Api, LiveFeed, SessionStore
from services.infra.settings import Settings

__all__ = ["NotStarted", "Wiring", "wired", "wiring_of"]


class NotStarted(RuntimeError):
    """A route ran before the lifespan connected the adapters (answered as any unexpected error: a 500 page)."""


@dataclass(eq=False)
class Wiring:
    """The console's settings and adapters; `sessions` and `api_for` are None until connected, `feed` when not live."""

    settings: Settings
    sessions: SessionStore | None = None
    api_for: Callable[[str], Api] | None = None  # the APIs, called with this key
    feed: LiveFeed | None = None
    broadcaster: Broadcaster = field(default_factory=Broadcaster)

    def session_store(self) -> SessionStore:
        if self.sessions is None:
            raise NotStarted("the console's session store is not connected")
        return self.sessions

    def api(self, key: str) -> Api:
        if self.api_for is None:
            raise NotStarted("the console's API client is not connected")
        return self.api_for(key)


def wiring_of(app: Starlette) -> Wiring:
    wiring: Wiring = app.state.wiring
    return wiring


def wired(request: Request) -> Wiring:
    return wiring_of(request.app)
