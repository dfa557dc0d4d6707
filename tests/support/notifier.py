"""What the notifier's tests share: logs with bulk changes, subscriptions, and an in-memory delivery log."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta

from events import Actor, AnyChange, Envelope, FlagDefined, FlagKind
from tests.support.factories import ALICE, LogBuilder


def seal_bulk(log: LogBuilder, changes: Iterable[AnyChange], *, reason: str, actor: Actor = ALICE) -> list[Envelope]:
    """Seal `changes` as one command does: one actor, one reason, one instant."""
    start = log.clock
    sealed = []
    for change in changes:
        log.clock = start
        envelope = log.append(change, reason=reason, actor=actor)
        assert envelope is not None, change
        sealed.append(envelope)
    log.clock = start + timedelta(seconds=1)
    return sealed


def defined(key: str, *, kind: FlagKind = FlagKind.RELEASE, group: str = "core") -> FlagDefined:
    return FlagDefined(flag_key=key, kind=kind, group=group)
