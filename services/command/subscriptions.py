"""Notification subscriptions on the command side, pure: the request bodies, the checks the event
schema cannot make, sealing a destination's secrets, and the public view (never a secret).
"""

from __future__ import annotations

import base64
import secrets
from typing import Annotated, Any
from urllib.parse import urlsplit

import orjson
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StringConstraints, field_validator

from events import (
    CHANGE_TYPES,
    DestinationKind,
    FlagChange,
    FlagKind,
    Level,
    SubscriptionChanged,
    SubscriptionCreated,
    subscription_stream,
)
from events.vocabulary import AlertKind
from flagcore.subscriptions import SubscriptionView
from services.command.schemas import NoNul, Reason
from services.infra.sealing import Sealer

__all__ = [
    "ALERT_TYPES",
    "FLAG_EVENT_TYPES",
    "ChangeSubscriptionRequest",
    "CreateSubscriptionRequest",
    "SubscriptionActionRequest",
    "changed",
    "created",
    "view",
]

# What a subscription may filter on: the types of flag changes (not key or subscription events).
FLAG_EVENT_TYPES = frozenset(name for name, cls in CHANGE_TYPES.items() if issubclass(cls, FlagChange))
# ...and the operational alerts it opts in to (the notifier derives them; named only, never implied).
ALERT_TYPES = frozenset(kind.value for kind in AlertKind)

Name = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100), NoNul,
    Field(description="What it is for, e.g. `#ops-alerts`."),
]  # fmt: skip
Pattern = Annotated[str, NoNul, Field(min_length=1, max_length=200, description="A glob over flag keys: `ai.*`.")]
Group = Annotated[str, NoNul, Field(min_length=1, max_length=64)]
ExpectedVersion = Annotated[
    StrictInt | None, Field(default=None, ge=0, description="Refuse (409) unless the subscription is at this version.")
]


class DestinationIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: DestinationKind
    url: str = Field(min_length=1, max_length=2000, description="Slack: the incoming-webhook URL (a secret).")
    secret: str | None = Field(
        default=None, max_length=200, description="Webhooks: a `whsec_…` signing secret; omitted, one is made."
    )

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        try:
            parts = urlsplit(value)
            host = parts.hostname
        except ValueError as exc:
            raise ValueError(f"not a URL: {exc}") from None
        if parts.scheme not in ("https", "http") or not host:
            raise ValueError("an https:// URL with a host (plain http only for hosts the notifier allows)")
        if parts.username is not None or parts.password is not None:
            raise ValueError("no user or password in the URL")
        return value

    @field_validator("secret")
    @classmethod
    def _webhook_secret(cls, value: str | None) -> str | None:
        if value is None:
            return None
        body = value.removeprefix("whsec_")
        try:
            raw = base64.b64decode(body, validate=True)
        except ValueError:
            raise ValueError("a Standard Webhooks secret: `whsec_` + base64") from None
        if len(raw) < 24:
            raise ValueError("at least 24 random bytes")
        return value


class _FiltersIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    flag_pattern: Pattern = "*"
    groups: list[Group] = Field(default=[], max_length=50, description="Only flags of these groups.")
    kinds: list[FlagKind] = Field(default=[], max_length=4, description="Only flags of these kinds.")
    levels: list[Level] = Field(default=[], max_length=4, description="Only settings at these levels.")
    event_types: list[str] = Field(default=[], max_length=50, description=(
        "Only these event types; and the operational alerts named here (`alert.kill_switch`, "
        "`alert.dead_letter`, `alert.projector_lag`), which no subscription hears unless it names them."))

    @field_validator("event_types")
    @classmethod
    def _flag_event_types(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - FLAG_EVENT_TYPES - ALERT_TYPES)
        if unknown:
            raise ValueError(f"not flag event types nor alerts: {', '.join(unknown)} "
                             f"(e.g. KillSwitchEngaged, OrgOverrideSet, {', '.join(sorted(ALERT_TYPES))})")
        return value


class CreateSubscriptionRequest(_FiltersIn):
    name: Name
    destination: DestinationIn
    reason: Reason

    @field_validator("destination")
    @classmethod
    def _secret_for_webhooks_only(cls, value: DestinationIn) -> DestinationIn:
        if value.kind is DestinationKind.SLACK and value.secret is not None:
            raise ValueError("a Slack destination has no secret (its URL is the secret)")
        return value


class ChangeSubscriptionRequest(BaseModel):
    """Absent fields are left as they are."""

    model_config = ConfigDict(extra="forbid")
    name: Name | None = None
    flag_pattern: Pattern | None = None
    groups: list[Group] | None = Field(default=None, max_length=50)
    kinds: list[FlagKind] | None = Field(default=None, max_length=4)
    levels: list[Level] | None = Field(default=None, max_length=4)
    event_types: list[str] | None = Field(default=None, max_length=50)
    reason: Reason
    expected_version: ExpectedVersion = None

    @field_validator("event_types")
    @classmethod
    def _flag_event_types(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else _FiltersIn._flag_event_types(value)


class SubscriptionActionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: Reason
    expected_version: ExpectedVersion = None


def new_id() -> str:
    return secrets.token_hex(8)


def new_webhook_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def shown_target(kind: DestinationKind, url: str) -> str:
    """What may be listed: a webhook's URL without its query; of a Slack URL (a secret) its host only."""
    parts = urlsplit(url)
    if kind is DestinationKind.SLACK:
        return f"{parts.scheme}://{parts.netloc}/…"
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


def created(
    body: CreateSubscriptionRequest, *, org_id: str | None, sealer: Sealer, subscription_id: str | None = None
) -> tuple[SubscriptionCreated, str | None]:
    """The event, and the secret to show once (a webhook's signing secret; None for Slack)."""
    sid = subscription_id or new_id()
    d = body.destination
    secret = (d.secret or new_webhook_secret()) if d.kind is DestinationKind.WEBHOOK else None
    plaintext = orjson.dumps({"url": d.url, "secret": secret})
    change = SubscriptionCreated(
        subscription_id=sid,
        org_id=org_id,
        name=body.name,
        destination=d.kind,
        target=shown_target(d.kind, d.url),
        sealed=sealer.seal(plaintext, bound_to=subscription_stream(org_id, sid)),
        flag_pattern=body.flag_pattern,
        groups=tuple(body.groups),
        kinds=tuple(body.kinds),
        levels=tuple(body.levels),
        event_types=tuple(body.event_types),
    )
    return change, secret


def changed(current: SubscriptionView, body: ChangeSubscriptionRequest) -> SubscriptionChanged | None:
    """The full new set of filters; None when it equals the current one (nothing to write)."""
    change = SubscriptionChanged(
        subscription_id=current.id,
        org_id=current.org_id,
        name=body.name if body.name is not None else current.name,
        flag_pattern=body.flag_pattern if body.flag_pattern is not None else current.flag_pattern,
        groups=tuple(body.groups if body.groups is not None else current.groups),
        kinds=tuple(body.kinds if body.kinds is not None else current.kinds),
        levels=tuple(body.levels if body.levels is not None else current.levels),
        event_types=tuple(body.event_types if body.event_types is not None else current.event_types),
    )
    same = (
        change.name == current.name
        and change.flag_pattern == current.flag_pattern
        and set(change.groups) == current.groups
        and set(change.kinds) == current.kinds
        and set(change.levels) == current.levels
        and set(change.event_types) == current.event_types
    )
    return None if same else change


def view(s: SubscriptionView) -> dict[str, Any]:
    """A subscription as the API shows it: everything but the sealed secrets."""
    return {
        "id": s.id,
        "org_id": s.org_id,
        "name": s.name,
        "destination": {"kind": s.destination.value, "target": s.target},
        "flag_pattern": s.flag_pattern,
        "groups": sorted(s.groups),
        "kinds": sorted(k.value for k in s.kinds),
        "levels": sorted(lv.value for lv in s.levels),
        "event_types": sorted(s.event_types),
        "paused": s.paused,
        "version": s.version,
        "created_at": s.created_at.isoformat(),
        "changed_at": s.changed_at.isoformat(),
    }
