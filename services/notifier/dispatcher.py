"""Deliveries in order per destination, each destination on its own: a queue and a worker per subscription.

A slow or dead destination only holds back its own queue (where order must be kept anyway: a
receiver sees a stream's changes in the order they happened). Each delivery is tried until
delivered, given up on (then a dead letter), or out of attempts (a dead letter too), and its
future resolves only once that outcome is in the delivery log: the consumer commits the topic
offset after that, never before.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from functools import partial
from typing import TypeVar

from services.notifier.deliveries import Attempt, AttemptStatus, DeadLetter, Delivery
from services.notifier.ports import DeliveryLog, DeliveryObserver, Sender
from services.notifier.retries import RetryPolicy, Verdict, verdict

__all__ = ["Dispatcher"]

log = logging.getLogger(__name__)
T = TypeVar("T")
RECORD_RETRY = (0.2, 0.5, 1.0, 2.0, 5.0)  # s between tries of a delivery-log write that failed (then 5 s on)

Job = tuple[Delivery, "asyncio.Future[None]"]


class Dispatcher:
    def __init__(
        self,
        *,
        sender: Sender,
        deliveries: DeliveryLog,
        policy: RetryPolicy,
        observer: DeliveryObserver | None = None,
        rng: random.Random | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._sender = sender
        self._log = deliveries
        self._policy = policy
        self._observer = observer
        self._rng = rng if rng is not None else random.SystemRandom()
        self._sleep = sleep
        self._queues: dict[str, asyncio.Queue[Job]] = {}
        self._workers: dict[str, asyncio.Task[None]] = {}

    def submit(self, delivery: Delivery) -> asyncio.Future[None]:
        """Queue `delivery` behind its destination's earlier ones; the future resolves once its outcome is recorded."""
        key = delivery.subscription.id
        queue = self._queues.get(key)
        if queue is None:
            queue = self._queues[key] = asyncio.Queue()
            self._workers[key] = asyncio.create_task(self._work(queue), name=f"notifier-destination-{key}")
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        queue.put_nowait((delivery, done))
        return done

    def backlog(self) -> dict[str, int]:
        """Deliveries waiting, per subscription (the one in flight not counted)."""
        return {key: queue.qsize() for key, queue in self._queues.items()}

    async def aclose(self) -> None:
        """Stop every worker; deliveries not yet recorded stay unrecorded (their offsets were not committed)."""
        for task in self._workers.values():
            task.cancel()
        await asyncio.gather(*self._workers.values(), return_exceptions=True)
        for queue in self._queues.values():
            while not queue.empty():
                queue.get_nowait()[1].cancel()
        self._workers.clear()
        self._queues.clear()

    async def _work(self, queue: asyncio.Queue[Job]) -> None:
        while True:
            delivery, done = await queue.get()
            try:
                await self._deliver(delivery)
            except asyncio.CancelledError:
                done.cancel()
                raise
            if not done.done():
                done.set_result(None)

    async def _deliver(self, delivery: Delivery) -> None:
        subscription_id = delivery.subscription.id
        if delivery.retry_of is None:  # a dead letter retried has an outcome already: the one it replaces
            settled = await self._durably(partial(self._log.settled, delivery.subscription, delivery.event_ids))
            if settled.issuperset(delivery.event_ids):
                log.info("already told %s about %s: not sent again", subscription_id, delivery.message_id)
                return
        failures = 0
        while True:
            attempt = await self._sender.send(delivery, failures + 1)
            outcome = verdict(attempt.http_status, refused=attempt.status is AttemptStatus.REFUSED)
            if outcome is Verdict.DELIVERED:
                await self._durably(partial(self._log.record_outcome, attempt, None))
                self._observe(attempt, dead=False)
                return
            failures += 1
            if outcome is Verdict.GIVE_UP or not self._policy.more_after(failures):
                dead = DeadLetter(delivery, _why(attempt, outcome), failures)
                log.warning("dead letter for %s, %s: %s", subscription_id, delivery.message_id, dead.reason)
                await self._durably(partial(self._log.record_outcome, attempt, dead))
                self._observe(attempt, dead=True)
                return
            await self._durably(partial(self._log.record_attempt, attempt))
            self._observe(attempt)
            await self._sleep(self._policy.pause(failures, self._rng))

    def _observe(self, attempt: Attempt, *, dead: bool | None = None) -> None:
        if self._observer is None:
            return
        self._observer.attempted(attempt)
        if dead is not None:
            self._observer.settled(attempt.delivery, dead)

    async def _durably(self, write: Callable[[], Awaitable[T]]) -> T:
        """The delivery log is what the offsets wait for: a failed write is tried again until it succeeds."""
        tries = 0
        while True:
            try:
                return await write()
            except Exception as exc:  # the adapter's own error, or a driver's it did not expect
                pause = RECORD_RETRY[min(tries, len(RECORD_RETRY) - 1)]
                tries += 1
                log.warning("delivery log write failed (try %d), again in %.1fs: %r", tries, pause, exc)
                await asyncio.sleep(pause)


def _why(attempt: Attempt, outcome: Verdict) -> str:
    said = attempt.error or f"HTTP {attempt.http_status}"
    return said if outcome is Verdict.GIVE_UP else f"{said} after {attempt.number} attempts"
