"""A delivery, its attempts and its dead letter, as plain data; and composing deliveries from notices. Pure."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from uuid import UUID

import orjson

from services.notifier.alerts import Alert
from services.notifier.messages import alert_slack_message, alert_webhook_body, bulks, slack_message, webhook_body
from services.notifier.notices import Notice
from services.notifier.subscriptions import DestinationKind, Subscription

__all__ = ["Attempt", "AttemptStatus", "DeadLetter", "Delivery", "compose", "compose_alert"]


@dataclass(frozen=True, slots=True)
class Delivery:
    """One request to one destination: one change, or (Slack) the changes of one bulk change.

    `retry_of` is the dead letter this delivery tries again ("retry now"): sent although its events
    have an outcome, and that outcome is replaced by the new one.
    """

    subscription: Subscription
    event_ids: tuple[UUID, ...]
    body: bytes = field(repr=False)
    retry_of: int | None = None

    @property
    def message_id(self) -> str:
        """`webhook-id`: the event id, so a receiver can drop a delivery it has already had."""
        return str(self.event_ids[0])


class AttemptStatus(StrEnum):
    DELIVERED = "delivered"
    FAILED = "failed"  # no answer, or one that is not 2xx
    REFUSED = "refused"  # the address guard would not send it


@dataclass(frozen=True, slots=True)
class Attempt:
    """One try, as the delivery log keeps it."""

    delivery: Delivery
    number: int
    status: AttemptStatus
    http_status: int | None
    latency_ms: float
    error: str | None = None
    response: str = ""  # the start of the destination's answer


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A delivery that was given up on: kept, with why, for a later "retry now"."""

    delivery: Delivery
    reason: str
    attempts: int


def compose(subscription: Subscription, notices: Sequence[Notice], *, console_url: str) -> list[Delivery]:
    """The deliveries `subscription` gets for `notices` (already matched), in order."""
    if subscription.destination.kind is DestinationKind.SLACK:
        return [
            Delivery(subscription, tuple(n.envelope.event_id for n in b), orjson.dumps(slack_message(b, console_url)))
            for b in bulks(notices)
        ]
    return [Delivery(subscription, (n.envelope.event_id,), orjson.dumps(webhook_body(n))) for n in notices]


def compose_alert(subscription: Subscription, alert: Alert) -> Delivery:
    """The one delivery of `alert` (already matched) to `subscription`: keyed by the alert's id."""
    if subscription.destination.kind is DestinationKind.SLACK:
        body = alert_slack_message(alert)
    else:
        body = alert_webhook_body(alert)
    return Delivery(subscription, (alert.id,), orjson.dumps(body))
