"""OFREP's change stream: tell each subscribed provider to refetch when a change that affects its org is projected.

The projector commits a batch, then DELs the cached documents it changed and
PUBLISHes their names (docs/architecture.md, "Redis"); each query worker's
invalidation listener hears them and hands them to its `ChangeHub`. The hub maps a
message to the orgs it affects (an org's or a user's document: that org; the
catalogue: every org), asks `Positions` where each subscribed org now stands, and
wakes the subscribers whose position moved. A subscriber's `frames` then sends an
SSE `refetchEvaluation` event whose `id:` is that position.

The position of an org is the number of projected events visible to it (its own
and the system's: `flag_history` under its RLS scope): it only grows, in the order
the projector commits, whatever partition an event came through, and it says
nothing of other orgs. A client that reconnects with `Last-Event-ID` below its
org's position missed a change and is told to refetch at once; one without the
header is told too (it cannot know what changed since its last fetch).

No I/O here: `Positions` is a port (`services.query.adapters.PostgresPositions`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

import orjson

from services.query import sse

__all__ = [
    "CHANGES_PATH",
    "REFETCH",
    "ChangeHub",
    "Positions",
    "StreamSettings",
    "Subscription",
    "TooManyStreams",
    "affected_orgs",
    "event_streams",
    "frames",
]

log = logging.getLogger(__name__)

CHANGES_PATH = "/ofrep/v1/changes"
REFETCH = "refetchEvaluation"
EVERY_ORG = "*"  # `affected_orgs`' answer for a change to what every org reads (the catalogue)


class Positions(Protocol):
    """Where an org stands in the log: the number of projected events visible to it (0: none)."""

    async def position(self, org_id: str) -> int: ...


class TooManyStreams(Exception):
    """This worker holds as many change streams as it may (`StreamSettings.max_subscribers`): 503."""


@dataclass(frozen=True, slots=True)
class StreamSettings:
    max_subscribers: int = 1000  # per worker process; each is one open connection and a few hundred bytes
    heartbeat_seconds: float = 15.0  # an idle stream sends a comment this often (proxies close silent ones)
    retry_ms: int = 1000  # what a client waits before reconnecting
    resync_seconds: float = 30.0  # while the invalidation subscription is down, every org is checked this often
    concurrency: int = 4  # position reads at once (they share the query role's pool with evaluations)


def affected_orgs(message: bytes | None) -> str | None:
    """The org an invalidation message concerns, `EVERY_ORG` for the catalogue or an unreadable message.

    None (a resubscription: messages may have been missed) is also `EVERY_ORG`.
    """
    if message is None:
        return EVERY_ORG
    try:
        body = orjson.loads(message)
        scope = body["scope"]
        if scope in ("org", "user") and isinstance(body["org_id"], str):
            return str(body["org_id"])
    except (orjson.JSONDecodeError, KeyError, TypeError):
        pass
    return EVERY_ORG


def event_streams(org_id: str) -> bytes:
    """The bulk answer's `eventStreams` (OFREP 0.3), as JSON: one SSE stream, on the provider's own origin."""
    return orjson.dumps([{"type": "sse", "endpoint": {"requestUri": f"{CHANGES_PATH}?org={org_id}"}}])


class Subscription:
    """One open stream: its org, the last position it was sent, and a wake-up when a later one is known."""

    __slots__ = ("_wake", "org_id", "pending", "sent")

    def __init__(self, org_id: str) -> None:
        self.org_id = org_id
        self.sent: int | None = None  # the last position sent (or the one the client said it had seen)
        self.pending: int | None = None  # a later position to send
        self._wake = asyncio.Event()

    def offer(self, position: int) -> None:
        """A position of the org: to send if it is later than anything sent or pending."""
        if (self.sent is None or position > self.sent) and (self.pending is None or position > self.pending):
            self.pending = position
            self._wake.set()

    async def next(self, timeout: float) -> int | None:
        """The next position to send, or None after `timeout` seconds with none (time for a heartbeat)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            if self.pending is None:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return None
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), remaining)
            self._wake.clear()
            position, self.pending = self.pending, None
            if position is None:
                continue
            if self.sent is None or position > self.sent:  # one offered before the stream's first position
                self.sent = position
                return position


class ChangeHub:
    """This worker's subscribers by org, and the one task that turns invalidations into their positions."""

    def __init__(
        self,
        positions: Positions,
        settings: StreamSettings | None = None,
        *,
        online: Callable[[], bool] = lambda: True,
    ) -> None:
        self.positions = positions
        self.settings = settings or StreamSettings()
        self._online = online  # is the invalidation subscription connected
        self._by_org: dict[str, set[Subscription]] = {}
        self._count = 0
        self._dirty: set[str] = set()
        self._wake = asyncio.Event()
        self.notified = 0  # positions offered to subscribers (what /metrics or a test may read)

    def __len__(self) -> int:
        return self._count

    def subscribe(self, org_id: str) -> Subscription:
        """A new subscription of `org_id`; `TooManyStreams` when this worker holds its maximum."""
        if self._count >= self.settings.max_subscribers:
            raise TooManyStreams(f"this server holds {self._count} change streams, its maximum; retry shortly")
        subscription = Subscription(org_id)
        self._by_org.setdefault(org_id, set()).add(subscription)
        self._count += 1
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        subscribers = self._by_org.get(subscription.org_id)
        if subscribers is None or subscription not in subscribers:
            return
        subscribers.remove(subscription)
        self._count -= 1
        if not subscribers:
            del self._by_org[subscription.org_id]

    def invalidated(self, message: bytes | None) -> None:
        """An invalidation message (None: the subscription was made again): check the orgs it affects."""
        org = affected_orgs(message)
        if org == EVERY_ORG:
            self._mark(self._by_org)
        elif org is not None and org in self._by_org:
            self._mark((org,))

    def _mark(self, orgs: Iterable[str]) -> None:
        before = len(self._dirty)
        self._dirty.update(orgs)
        if len(self._dirty) != before:
            self._wake.set()

    async def run(self) -> None:
        """Forever: read the positions of the orgs marked, offer them to their subscribers."""
        limit = asyncio.Semaphore(self.settings.concurrency)
        resynced = time.monotonic()
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.settings.resync_seconds)
            self._wake.clear()
            now = time.monotonic()
            if not self._online() and now - resynced >= self.settings.resync_seconds:
                self._dirty.update(self._by_org)  # no invalidations to hear: look for ourselves
                resynced = now
            orgs, self._dirty = self._dirty, set()
            if orgs:
                await asyncio.gather(*(self._check(org, limit) for org in orgs))

    async def _check(self, org_id: str, limit: asyncio.Semaphore) -> None:
        if org_id not in self._by_org:
            return
        try:
            async with limit:
                position = await self.positions.position(org_id)
        except Exception as exc:  # the stream stays open; the next change (or the resync) tries again
            log.warning("could not read the log position of org %s for its change streams: %r", org_id, exc)
            return
        self.offer(org_id, position)

    def offer(self, org_id: str, position: int) -> None:
        for subscription in self._by_org.get(org_id, ()):
            self.notified += 1
            subscription.offer(position)


async def frames(
    hub: ChangeHub,
    subscription: Subscription,
    position: int,
    last_seen: int | None,
    *,
    still_allowed: Callable[[], Awaitable[bool]] | None = None,
) -> AsyncGenerator[bytes, None]:
    """The stream's bytes: `retry`, a refetch at once if the client may have missed a change, then one per change.

    `position` is the org's position when the stream opened (read after `subscription` was made, so no change
    falls between); `last_seen` the client's `Last-Event-ID`: only when it is exactly `position` is the client
    known to be up to date. Each heartbeat asks `still_allowed` (the key is
    still valid): when it says no, the stream ends. The subscription is let go however the stream ends.
    """
    settings = hub.settings
    try:
        yield sse.retry(settings.retry_ms)
        subscription.sent = position
        if last_seen == position:
            yield sse.comment("up to date")
        else:  # behind, or an id that is not this org's position (never ahead of it): refetch to be sure
            yield sse.event({"type": REFETCH}, event_id=position)
        while True:
            later = await subscription.next(settings.heartbeat_seconds)
            if later is not None:
                yield sse.event({"type": REFETCH}, event_id=later)
                continue
            if still_allowed is not None and not await still_allowed():
                return
            yield sse.comment("keep-alive")
    finally:
        hub.unsubscribe(subscription)
