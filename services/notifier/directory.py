"""The subscriptions in force, as the log says: the fold of their events, with their secrets opened.

The notifier shows it every event it reads (`observe`), in log order, the same events it folds
for flags; a subscription created, changed, paused, resumed or deleted takes effect for the
changes after it in the log. A subscription whose secrets do not open (no key, another key) is
left out, with an error in the log, until an event changes it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import orjson

from events import Envelope, subscription_stream
from flagcore import FlagError
from flagcore.subscriptions import SubscriptionBook, SubscriptionView
from services.infra.sealing import Sealer, SealError
from services.notifier.subscriptions import Destination, Subscription

__all__ = ["SubscriptionDirectory"]

log = logging.getLogger(__name__)


class SubscriptionDirectory:
    def __init__(self, sealer: Sealer | None) -> None:
        self._sealer = sealer
        self._book = SubscriptionBook()
        self._opened: dict[tuple[str, int], Subscription | None] = {}  # (stream, version) -> opened, or None
        self.current: Sequence[Subscription] = ()

    def reset(self) -> None:
        """Forget everything: the log is about to be read again from the beginning."""
        self._book = SubscriptionBook()
        self._opened = {}
        self.current = ()

    def observe(self, envelope: Envelope) -> bool:
        """Fold `envelope`; True when the subscriptions in force changed."""
        try:
            if not self._book.apply(envelope):
                return False
        except FlagError as exc:  # an impossible subscription event: as the projector, tell nobody of it
            log.warning("subscription event %s refused: %s", envelope.event_id, exc)
            return False
        opened = (self._open(view) for view in self._book.live.values())
        self.current = tuple(s for s in opened if s is not None)
        return True

    def find(self, org_id: str | None, subscription_id: str) -> tuple[SubscriptionView, Subscription | None] | None:
        """The live subscription of that org (None: system-wide) with that id, and it opened (None: its secrets
        do not open); None when there is no such subscription."""
        view = self._book.live.get(subscription_stream(org_id, subscription_id))
        return None if view is None else (view, self._open(view))

    def _open(self, view: SubscriptionView) -> Subscription | None:
        key = (view.stream, view.version)
        if key not in self._opened:
            self._opened[key] = self._subscription(view)
        return self._opened[key]

    def _subscription(self, view: SubscriptionView) -> Subscription | None:
        if self._sealer is None:
            log.error("subscription %s left out: FLAGS_SUBSCRIPTION_KEY is not set", view.id)
            return None
        try:
            secrets = orjson.loads(self._sealer.open(view.sealed, bound_to=view.stream))
            destination = Destination(view.destination, secrets["url"], secrets.get("secret"))
        except (SealError, orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            log.error("subscription %s left out: its secrets do not open (%s)", view.id, exc)
            return None
        return Subscription(
            id=view.id,
            destination=destination,
            org_id=view.org_id,
            flag_pattern=view.flag_pattern,
            groups=view.groups,
            kinds=view.kinds,
            levels=view.levels,
            event_types=view.event_types,
            paused=view.paused,
        )
