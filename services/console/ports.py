"""What the console's routes need, as protocols and the values they exchange.

`Api` is the command, query and notifier APIs called with the signed-in user's key (`client.HttpApi`),
`SessionStore` where sessions live (`sessions.RedisSessionStore`; `sessions.MemorySessionStore` in
the unit tests), `LiveFeed` the topic followed for the live pages (`live.TopicFeed`). `bootstrap`
plugs the concrete ones in.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from services.auth.policy import Principal, Role

__all__ = ["Api", "ApiError", "LiveFeed", "Session", "SessionStore", "new_token"]


def new_token() -> str:
    """256 random bits, URL-safe: session ids and CSRF tokens."""
    return secrets.token_urlsafe(32)


@dataclass(frozen=True, slots=True)
class Session:
    """Who is signed in: their key (never sent to the browser), its role and scope, and the CSRF token."""

    api_key: str
    key_id: str
    name: str
    role: str
    org_id: str | None
    csrf: str

    @property
    def principal(self) -> Principal:
        return Principal(key_id=self.key_id, name=self.name, role=Role(self.role), org_id=self.org_id)

    def dumps(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def loads(cls, raw: str | bytes) -> Session:
        return cls(**json.loads(raw))


class SessionStore(Protocol):
    async def create(self, session: Session) -> str:
        """Store `session`; return the new session id for the cookie."""
        ...

    async def get(self, session_id: str) -> Session | None:
        """The live session, its idle timer restarted; None when unknown or idle too long."""
        ...

    async def delete(self, session_id: str) -> None: ...


class ApiError(Exception):
    """The API refused (4xx), failed (5xx) or could not be reached (503 with code `unreachable`)."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        self.status = status
        self.body = body
        self.code = str(body.get("error", "error"))
        self.detail = str(body.get("detail", "the service refused the request"))
        self.field = body.get("field")
        super().__init__(f"{status} {self.code}: {self.detail}")


class Api(Protocol):
    async def whoami(self) -> dict[str, Any]: ...

    async def catalog(self) -> list[dict[str, Any]]: ...

    async def evaluate(
        self, org: str, flag: str, *, platform: str | None, user: str | None, context: str | None = None
    ) -> dict[str, Any]: ...

    async def evaluate_all(self, org: str, *, platform: str | None, user: str | None) -> list[dict[str, Any]]: ...

    async def platforms(self, org: str) -> list[str]: ...

    async def stream(self, stream: str) -> dict[str, Any]: ...

    async def events(self, *, org: str | None, flag: str | None, after: int, limit: int) -> dict[str, Any]: ...

    async def history(self, params: dict[str, Any]) -> dict[str, Any]: ...

    async def export(self, params: dict[str, Any]) -> bytes: ...

    async def diff(self, *, org: str, since: str, until: str) -> dict[str, Any]: ...

    async def stale_flags(self) -> dict[str, Any]: ...

    async def schedules(self, org: str) -> dict[str, Any]: ...

    async def at(self, *, org: str, at: str, flag: str | None, platform: str | None, user: str | None
                 ) -> dict[str, Any]: ...

    async def keys(self, org: str | None) -> list[dict[str, Any]]: ...

    async def change(self, method: str, path: str, body: dict[str, Any]) -> dict[str, Any]: ...

    async def readiness(self) -> dict[str, Any]: ...

    async def override_counts(self) -> dict[str, dict[str, int]]: ...

    async def usage(self, org: str | None, *, minutes: int) -> dict[str, Any]: ...

    async def subscriptions(self, org: str | None) -> list[dict[str, Any]]: ...

    async def subscription(self, org: str | None, subscription_id: str) -> dict[str, Any]: ...

    async def deliveries(self, org: str | None, subscription_id: str, *, limit: int) -> list[dict[str, Any]]: ...

    async def dead_letters(self, org: str | None, subscription_id: str, *, limit: int) -> list[dict[str, Any]]: ...

    async def retry_dead_letters(self, org: str | None, subscription_id: str) -> dict[str, Any]: ...


class LiveFeed(Protocol):
    """The topic as the status page sees it: is it being followed, and how far behind is the projector."""

    ready: asyncio.Event

    async def projector_lag(self) -> int | None: ...
