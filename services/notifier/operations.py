"""What operators ask the notifier (its HTTP API): a subscription's delivery log, its dead letters, "retry now".

The notifier answers these itself rather than the command API reading its tables: it owns them
(every statement over them is in `store`), and a retry is a delivery like any other, sent by the
same dispatcher with the subscription's opened secrets, in order behind that destination's
other deliveries. A dead letter is retried once at a time: one already on its way again is not
queued a second time.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from functools import partial
from typing import Any

from flagcore.subscriptions import SubscriptionView
from services.notifier.deliveries import Delivery
from services.notifier.directory import SubscriptionDirectory
from services.notifier.ports import DeliveryReads
from services.notifier.subscriptions import Subscription

__all__ = ["NotReady", "NotifierError", "Operations", "SubscriptionUnavailable", "UnknownSubscription"]

log = logging.getLogger(__name__)


class NotifierError(Exception):
    """Base of what the notifier's API refuses (each is mapped to its answer in `api`)."""


class UnknownSubscription(NotifierError):
    def __init__(self, subscription_id: str) -> None:
        super().__init__(f"no subscription {subscription_id!r} here")
        self.subscription_id = subscription_id


class SubscriptionUnavailable(NotifierError):
    """Paused, or its secrets do not open on this notifier: nothing can be sent to it now."""


class NotReady(NotifierError):
    """Still folding the log: which subscriptions exist is not known yet."""


class Operations:
    def __init__(
        self,
        *,
        directory: SubscriptionDirectory,
        reads: DeliveryReads,
        submit: Callable[[Delivery], asyncio.Future[None]],
        caught_up: Callable[[], bool],
    ) -> None:
        self._directory = directory
        self._reads = reads
        self._submit = submit
        self._caught_up = caught_up
        self._retrying: set[int] = set()  # dead letters queued again and not yet settled

    async def attempts(self, org_id: str | None, subscription_id: str, limit: int) -> dict[str, Any]:
        self._known(org_id, subscription_id)
        rows = await self._reads.latest_attempts(org_id, subscription_id, limit)
        return {"subscription_id": subscription_id, "org_id": org_id, "attempts": rows}

    async def dead_letters(self, org_id: str | None, subscription_id: str, limit: int) -> dict[str, Any]:
        self._known(org_id, subscription_id)
        rows = await self._reads.dead_letters(org_id, subscription_id, limit)
        return {"subscription_id": subscription_id, "org_id": org_id, "dead_letters": rows}

    async def retry(self, org_id: str | None, subscription_id: str) -> dict[str, Any]:
        """Queue every dead letter not yet retried; its new outcome is in the log once it is sent (or given up)."""
        subscription = self._sendable(org_id, subscription_id)
        pending = await self._reads.pending_dead_letters(org_id, subscription_id)
        queued = []
        for dead in pending:
            if dead.id in self._retrying:
                continue
            self._retrying.add(dead.id)
            done = self._submit(Delivery(subscription, dead.event_ids, dead.body, retry_of=dead.id))
            done.add_done_callback(partial(self._settled, dead.id))
            queued.append(dead.id)
        log.info("retrying dead letters %s of subscription %s", queued, subscription_id)
        return {"subscription_id": subscription_id, "org_id": org_id, "retried": queued}

    def _settled(self, dead_id: int, _: asyncio.Future[None]) -> None:
        self._retrying.discard(dead_id)

    def _known(self, org_id: str | None, subscription_id: str) -> tuple[SubscriptionView, Subscription | None]:
        if not self._caught_up():
            raise NotReady("the notifier is still reading the log; retry shortly")
        found = self._directory.find(org_id, subscription_id)
        if found is None:
            raise UnknownSubscription(subscription_id)
        return found

    def _sendable(self, org_id: str | None, subscription_id: str) -> Subscription:
        view, subscription = self._known(org_id, subscription_id)
        if view.paused:
            raise SubscriptionUnavailable(f"subscription {subscription_id!r} is paused: resume it first")
        if subscription is None:
            raise SubscriptionUnavailable(f"the secrets of subscription {subscription_id!r} do not open here")
        return subscription
