"""The headers of a delivery: Standard Webhooks signatures for webhooks, plain JSON for Slack."""

from __future__ import annotations

from datetime import datetime

from standardwebhooks import Webhook

from services.notifier.deliveries import Delivery
from services.notifier.subscriptions import DestinationKind

__all__ = ["headers"]


def headers(delivery: Delivery, at: datetime) -> dict[str, str]:
    """`webhook-id` (the event id), `webhook-timestamp` and `webhook-signature` over id, timestamp and body."""
    found = {"content-type": "application/json", "user-agent": "flagstream-notifier"}
    destination = delivery.subscription.destination
    if destination.kind is not DestinationKind.WEBHOOK:
        return found
    assert destination.secret is not None  # a webhook subscription has one (Subscription checks)
    signer = Webhook(destination.secret)
    found["webhook-id"] = delivery.message_id
    found["webhook-timestamp"] = str(int(at.timestamp()))
    found["webhook-signature"] = signer.sign(delivery.message_id, at, delivery.body)
    return found
