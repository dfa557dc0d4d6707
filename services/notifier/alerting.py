"""Telling an alert: to every subscription in force that opted in, through the dispatcher like a change.

Each delivery is keyed by the alert's id, so the dispatcher's "already told?" check (the delivery log's
outcomes) de-duplicates an alert derived again after a restart, and a failing destination retries and
dead-letters it as any other delivery.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence

from services.notifier.alerts import Alert, alert_matches
from services.notifier.deliveries import Delivery, compose_alert
from services.notifier.subscriptions import Subscription

__all__ = ["AlertTeller"]

log = logging.getLogger(__name__)


class AlertTeller:
    def __init__(
        self,
        subscriptions: Callable[[], Sequence[Subscription]],
        submit: Callable[[Delivery], asyncio.Future[None]],
        *,
        told: Callable[[Alert, int], None] | None = None,
    ) -> None:
        self._subscriptions = subscriptions
        self._submit = submit
        self._told = told

    def deliveries(self, alert: Alert) -> list[Delivery]:
        """The deliveries of `alert`, one per subscription that opted in."""
        return [compose_alert(s, alert) for s in self._subscriptions() if alert_matches(s, alert)]

    def tell(self, alert: Alert) -> list[asyncio.Future[None]]:
        """Queue `alert` to every opted-in subscription; each future resolves once its outcome is recorded."""
        found = self.deliveries(alert)
        log.info("alert %s (%s): %s, to %d subscription(s)", alert.id, alert.type.value, alert.title, len(found))
        if self._told is not None:
            self._told(alert, len(found))
        return [self._submit(d) for d in found]
