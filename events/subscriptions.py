"""Notification subscriptions as events: who is told of which changes, and where.

A system-wide subscription (`org_id` None) lives in stream `subscription/{id}` on the system
partition; an org's in `org/{org}/subscription/{id}`, on that org's partition, so it is ordered
with the org's own changes. The destination's secret (a Slack webhook URL, a webhook signing
secret) travels only sealed (`sealed`: AES-GCM, opened by the notifier); `target` is what may
be shown. Filter sets are sorted tuples, so their canonical JSON (and hash) has one form.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from events.base import Change
from events.fields import OrgId
from events.vocabulary import SUBSCRIPTION_ID_PATTERN, DestinationKind, FlagKind, Level

__all__ = [
    "SubscriptionChange",
    "SubscriptionChanged",
    "SubscriptionCreated",
    "SubscriptionDeleted",
    "SubscriptionPaused",
    "SubscriptionResumed",
    "subscription_stream",
]

GroupName = str
EventTypeName = str


def subscription_stream(org_id: str | None, subscription_id: str) -> str:
    return f"subscription/{subscription_id}" if org_id is None else f"org/{org_id}/subscription/{subscription_id}"


class SubscriptionChange(Change):
    """A change to one subscription."""

    subscription_id: str = Field(pattern=SUBSCRIPTION_ID_PATTERN, description="The subscription's id.")
    org_id: OrgId | None = Field(description="The org whose changes it hears; None: system-wide.")

    @property
    def stream(self) -> str:
        return subscription_stream(self.org_id, self.subscription_id)

    @property
    def tenant(self) -> str | None:
        return self.org_id


class _Filtered(SubscriptionChange):
    """The filters, carried in full on every create and change. An empty set lets everything through."""

    name: str = Field(min_length=1, max_length=100, description="What it is for, e.g. `#ops-alerts`.")
    flag_pattern: str = Field(default="*", min_length=1, max_length=200, description="A glob over flag keys.")
    groups: tuple[GroupName, ...] = Field(default=(), max_length=50)
    kinds: tuple[FlagKind, ...] = Field(default=(), max_length=4)
    levels: tuple[Level, ...] = Field(default=(), max_length=4)
    event_types: tuple[EventTypeName, ...] = Field(default=(), max_length=50)

    @field_validator("groups", "kinds", "levels", "event_types")
    @classmethod
    def _one_form(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(sorted(set(value)))


class SubscriptionCreated(_Filtered):
    """A new subscription, delivering from now on."""

    type: Literal["SubscriptionCreated"] = "SubscriptionCreated"
    destination: DestinationKind
    target: str = Field(min_length=1, max_length=300, description="The destination as it may be shown.")
    sealed: str = Field(min_length=1, max_length=8000, description="The destination's secrets, AES-GCM sealed.")


class SubscriptionChanged(_Filtered):
    """The subscription's name or filters changed (the full new set is carried)."""

    type: Literal["SubscriptionChanged"] = "SubscriptionChanged"


class SubscriptionPaused(SubscriptionChange):
    """No deliveries until resumed; changes meanwhile are not sent later."""

    type: Literal["SubscriptionPaused"] = "SubscriptionPaused"


class SubscriptionResumed(SubscriptionChange):
    type: Literal["SubscriptionResumed"] = "SubscriptionResumed"


class SubscriptionDeleted(SubscriptionChange):
    """The subscription is gone, its sealed secrets with it (the stream's value keeps none)."""

    type: Literal["SubscriptionDeleted"] = "SubscriptionDeleted"
