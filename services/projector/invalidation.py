"""Cache invalidation off the batch's path: a slow, hung or absent Redis never holds up projection.

`Projector` hands each committed batch's documents to `BackgroundInvalidator.invalidate`, which
only queues them. One task sends what is queued, merged (a document ten batches changed is
deleted once), and when Redis fails or hangs keeps it queued and tries again with backoff: no
invalidation is dropped while the process lives, so Redis cannot keep a stale document past
its recovery. What a process did not live to send is covered when the next one starts: it
first purges every cached document (the query services read them again from Postgres), since
its predecessor may have died with invalidations queued. Past `max_pending` queued documents,
one purge replaces them.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable, Sequence

from services.observability import tracing
from services.projector.cache_targets import CacheTarget
from services.projector.ports import Invalidator

log = logging.getLogger(__name__)

MAX_PENDING = 100_000
MAX_LINKS = 32  # batches' traces one send continues (the first as its parent, the others linked)


class BackgroundInvalidator:
    def __init__(
        self,
        send: Invalidator,
        purge: Callable[[], Awaitable[int]],
        *,
        max_pending: int = MAX_PENDING,
        first_retry: float = 0.2,
        max_retry: float = 1.0,  # a recovered Redis gets what it missed within about a second
        report_every: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._send = send
        self._purge = purge
        self._max_pending = max_pending
        self._first_retry, self._max_retry = first_retry, max_retry
        self._sleep = sleep
        self._report_every, self._clock = report_every, clock
        self._reported = -math.inf  # when the last failure was logged
        self._failing = False
        self._queued: set[CacheTarget] = set()
        self._purge_due = True  # a predecessor may have died with invalidations queued
        self._wake = asyncio.Event()
        self._wake.set()
        self.failures = 0  # sends and purges that failed (retried)
        self.sent = 0  # documents invalidated
        self.purges = 0
        self._error: Exception | None = None
        self._traces: list[str] = []  # traceparents of the batches whose documents are queued

    @property
    def pending(self) -> int:
        """Documents queued and not yet invalidated (a due purge counts as one)."""
        return len(self._queued) + int(self._purge_due)

    async def invalidate(self, targets: Sequence[CacheTarget]) -> bool:
        """Queue `targets`; True: queued (their invalidation no longer depends on this batch)."""
        if tracing.enabled() and (traced := tracing.current_traceparent()) is not None:
            self._traces.append(traced)  # the batch's trace, continued by the send that carries its documents
            del self._traces[:-MAX_LINKS]
        if not self._purge_due:  # a purge not yet begun covers them already
            self._queued.update(targets)
            if len(self._queued) > self._max_pending:
                log.warning("%d cache invalidations queued: purging the whole cache instead", len(self._queued))
                self._queued.clear()
                self._purge_due = True
        self._wake.set()
        return True

    async def run(self) -> None:
        """Send what is queued until cancelled; failures are retried, never dropped."""
        delay = self._first_retry
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._purge_due or self._queued:
                if await self._step():
                    delay = self._first_retry
                    self._recovered()
                else:
                    self._failed()
                    await self._sleep(delay)
                    delay = min(delay * 2, self._max_retry)

    async def drain(self) -> None:
        """Send what is queued now (one attempt each): at shutdown, and in tests."""
        while self._purge_due or self._queued:
            if not await self._step():
                return

    async def _step(self) -> bool:
        if self._purge_due:
            self._purge_due = False  # documents queued from here on are changed after the purge began
            try:
                removed = await self._purge()
            except Exception as exc:
                self._purge_due = True
                self._error = exc
                return False
            self.purges += 1
            log.info("cache purged: %d cached documents dropped", removed)
            return True
        batch, self._queued = self._queued, set()
        traces, self._traces = self._traces, []
        parent, links = (traces[0], traces[1:]) if traces else (None, [])
        with tracing.span("send cache invalidations", parent=parent, links=links):
            sent = await self._send.invalidate(sorted(batch))
        if sent:
            self.sent += len(batch)
            return True
        self._traces = (traces + self._traces)[-MAX_LINKS:]
        if not self._purge_due:
            self._queued |= batch
        self._error = getattr(self._send, "last_error", None)
        return False

    def _failed(self) -> None:
        """Said once, then every `report_every` seconds while it lasts."""
        self.failures += 1
        now = self._clock()
        if now - self._reported >= self._report_every:
            self._reported = now
            log.warning(
                "Redis is not taking cache invalidations (%d queued, retried every second; the query services "
                "stop using Redis when it stops answering): %s", self.pending, self._error,
            )
        self._failing = True

    def _recovered(self) -> None:
        if self._failing:
            self._failing = False
            self._reported = -math.inf
            log.warning("Redis takes cache invalidations again after %d failed attempts", self.failures)
