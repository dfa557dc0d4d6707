"""Where subscriptions come from until they are event-sourced: a list in memory, or a JSON file.

The file is read again whenever it changes, so a subscription is added, paused or removed without a
restart. A bad file is refused with the field named, and the last good list stays in force.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from events import FlagKind, Level
from events.fields import OrgId
from services.notifier.subscriptions import Destination, DestinationKind, Subscription

__all__ = ["FileSubscriptions", "MemorySubscriptions", "SubscriptionFileError", "parse_subscriptions"]

log = logging.getLogger(__name__)


class SubscriptionFileError(Exception):
    """The subscriptions file cannot be read or does not hold valid subscriptions (the message names the field)."""


class _DestinationSpec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    kind: DestinationKind
    url: str = Field(min_length=1, max_length=2000)
    secret: str | None = Field(default=None, description="`whsec_` + base64; webhooks only")


class _SubscriptionSpec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
    org_id: OrgId | None = None
    destination: _DestinationSpec
    flag_pattern: str = Field(default="*", min_length=1, max_length=200)
    groups: frozenset[str] = frozenset()
    kinds: frozenset[FlagKind] = frozenset()
    levels: frozenset[Level] = frozenset()
    event_types: frozenset[str] = frozenset()
    paused: bool = False

    def build(self) -> Subscription:
        d = self.destination
        return Subscription(
            id=self.id, destination=Destination(d.kind, d.url, d.secret), org_id=self.org_id,
            flag_pattern=self.flag_pattern, groups=self.groups, kinds=self.kinds, levels=self.levels,
            event_types=self.event_types, paused=self.paused,
        )


_SPECS = TypeAdapter(list[_SubscriptionSpec])


def parse_subscriptions(raw: bytes | str) -> list[Subscription]:
    """A JSON list of subscriptions; `SubscriptionFileError` names the first bad field."""
    try:
        specs = _SPECS.validate_json(raw)
        found = [spec.build() for spec in specs]
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise SubscriptionFileError(f"{where}: {first['msg']}") from None
    except ValueError as exc:  # a destination that Subscription itself refuses (a webhook without a secret)
        raise SubscriptionFileError(str(exc)) from None
    ids = [s.id for s in found]
    if len(set(ids)) != len(ids):
        raise SubscriptionFileError("id: subscription ids must be distinct")
    return found


class MemorySubscriptions:
    def __init__(self, subscriptions: Sequence[Subscription] = ()) -> None:
        self.subscriptions = list(subscriptions)

    async def current(self) -> Sequence[Subscription]:
        return self.subscriptions


class FileSubscriptions:
    def __init__(self, path: Path) -> None:
        self._path = path
        self._stamp: tuple[int, int] | None = None
        self._subscriptions: list[Subscription] = []
        self._load()  # a bad file at start is an error the operator sees at once

    async def current(self) -> Sequence[Subscription]:
        try:
            self._load()
        except SubscriptionFileError as exc:
            log.error("subscriptions file %s refused, keeping the %d loaded before: %s",
                      self._path, len(self._subscriptions), exc)
        return self._subscriptions

    def _load(self) -> None:
        try:
            stat = self._path.stat()
            stamp = (stat.st_mtime_ns, stat.st_size)
            if stamp == self._stamp:
                return
            raw = self._path.read_bytes()
        except OSError as exc:
            raise SubscriptionFileError(f"cannot read {self._path}: {exc.strerror}") from exc
        self._stamp = stamp  # a refused file is not read again (nor logged again) until it changes
        self._subscriptions = parse_subscriptions(raw)
        log.info("loaded %d subscriptions from %s", len(self._subscriptions), self._path)
