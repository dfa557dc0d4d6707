"""`GET /ofrep/v1/changes`: OFREP's change stream for one org, as server-sent events; its FastAPI route.

`open_stream` is the use case both HTTP layers call: the route here (documented in
OpenAPI, and serving the stream when the app runs on any ASGI server) and
`services.query.changes_http` (the product's own server, `python -m services.query`,
whose ASGI bridge collects whole answers and so cannot carry a stream). Authenticated
as every OFREP route is; the org comes from the key, or from `?org=` (required with a
system-wide key; an org-scoped key may only name its own).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import Response, StreamingResponse

from events.vocabulary import ORG_ID_PATTERN
from services.auth.authenticator import Unauthenticated
from services.auth.http import AuthGate, Caller, gate_of
from services.auth.policy import Action, Forbidden, Principal, authorize, authorize_role
from services.http.errors import UNAVAILABLE_HEADERS, problem
from services.query import sse, validation
from services.query.changes_stream import CHANGES_PATH, ChangeHub, Subscription, TooManyStreams, frames
from services.query.dependencies import NOT_STARTED, Wired
from services.query.errors import InvalidParameter, Unavailable

__all__ = ["EVENT_STREAM", "STREAM_HEADERS", "Frames", "Opened", "open_stream", "router", "still_allowed", "too_many"]

EVENT_STREAM = "text/event-stream"
# What a stream's answer carries besides the security headers (whose `cache-control: no-store` it keeps):
# `x-accel-buffering: no` asks nginx-like proxies to pass each event on at once.
STREAM_HEADERS = [("content-type", EVENT_STREAM), ("x-accel-buffering", "no")]


@dataclass(frozen=True, slots=True)
class Opened:
    """A stream ready to send: its subscription, the org's position when it opened, the client's last id."""

    hub: ChangeHub
    subscription: Subscription
    position: int
    last_seen: int | None

    def frames(self, still: Callable[[], Awaitable[bool]] | None = None) -> Frames:
        stream = frames(self.hub, self.subscription, self.position, self.last_seen, still_allowed=still)
        return Frames(stream, lambda: self.hub.unsubscribe(self.subscription))


class Frames:
    """A stream's frames whose `aclose` lets the subscription go even if no frame was ever asked for (a client
    that left while the stream was being opened): an async generator that never started runs no `finally`."""

    __slots__ = ("_release", "_stream")

    def __init__(self, stream: AsyncGenerator[bytes, None], release: Callable[[], None]) -> None:
        self._stream = stream
        self._release = release

    def __aiter__(self) -> Frames:
        return self

    async def __anext__(self) -> bytes:
        return await anext(self._stream)

    async def aclose(self) -> None:
        try:
            await self._stream.aclose()
        finally:
            self._release()


async def open_stream(
    hub: ChangeHub | None, principal: Principal, org: str | None, last_event_id: str | None
) -> Opened:
    """Authorise, subscribe, read the org's position. Raises `Forbidden`, `InvalidParameter` (the `org` field),
    `TooManyStreams`, `Unavailable` (Postgres, or not started); never leaves a subscription behind."""
    authorize_role(principal, Action.EVALUATE)
    if hub is None:
        raise Unavailable("postgres", NOT_STARTED)
    if org is not None:
        org = validation.org_id(org, "org")
    else:
        org = principal.org_id
        if org is None:
            raise InvalidParameter("org", "org is required: a system-wide key follows the changes of the org named")
    authorize(principal, Action.EVALUATE, org_id=org)
    subscription = hub.subscribe(org)
    try:
        position = await hub.positions.position(org)
    except BaseException:
        hub.unsubscribe(subscription)
        raise
    return Opened(hub, subscription, position, sse.last_event_id(last_event_id))


def still_allowed(
    gate: AuthGate | None, authorization: str | None, client: str, org_id: str
) -> Callable[[], Awaitable[bool]]:
    """Asked at each heartbeat: is the key still valid and allowed this org? (An outage of the key store is not a
    no: the stream stays open, as the key cache would have answered.)"""

    async def check() -> bool:
        if gate is None:
            return False
        try:
            principal = await gate.authenticator.authenticate(authorization)
            authorize(principal, Action.EVALUATE, org_id=org_id)
        except (Unauthenticated, Forbidden):
            return False
        except Exception:
            return True
        return True

    return check


def too_many(exc: TooManyStreams) -> Response:
    """503 with `Retry-After`: this worker holds as many streams as it may; another (or this one soon) may not."""
    return problem(503, "too_many_streams", str(exc), headers=UNAVAILABLE_HEADERS)


router = APIRouter()

_EXAMPLE = 'retry: 1000\n\nid: 42\ndata: {"type":"refetchEvaluation"}\n\n: keep-alive\n\n'


@router.get(
    CHANGES_PATH,
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "Server-sent events: `refetchEvaluation` (with `id:`, the org's position in the log) "
            "at once when the client may have missed a change, then one per change affecting the org; a "
            "`: keep-alive` comment when idle.",
            "content": {EVENT_STREAM: {"schema": {"type": "string"}, "example": _EXAMPLE}},
        },
        422: {"description": "`org` is malformed, or missing with a system-wide key"},
        503: {"description": "Postgres is unreachable, or this server holds its maximum of streams (Retry-After)"},
    },
    tags=["OFREP"],
    summary="OFREP: the change stream named by the bulk answer's eventStreams",
)
async def ofrep_changes(
    caller: Caller,
    wired: Wired,
    request: Request,
    org: Annotated[
        str | None, Query(pattern=ORG_ID_PATTERN, description="The org; required with a system-wide key.")
    ] = None,
    last_event_id: Annotated[
        str | None, Header(description="The last `id:` received: a client up to date is not told to refetch.")
    ] = None,
) -> Response:
    try:
        opened = await open_stream(wired.changes, caller, org, last_event_id)
    except TooManyStreams as exc:
        return too_many(exc)
    client = request.client.host if request.client else "unknown"
    check = still_allowed(
        gate_of(request.app), request.headers.get("authorization"), client, opened.subscription.org_id
    )
    return StreamingResponse(opened.frames(check), media_type=EVENT_STREAM, headers={"X-Accel-Buffering": "no"})
