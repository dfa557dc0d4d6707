"""A change as the notifier tells it: the event plus what the fold knows of its flag.

A setting's event does not carry its flag's kind or group (the definition does), so the
notifier folds the log as it reads it, with the same `flagcore` fold the services run,
and reads the definition from the state.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from events import Envelope, FlagChange, FlagKind, Level
from flagcore import FlagError, FlagState

__all__ = ["Notice", "NoticeFeed", "describe"]


@dataclass(frozen=True, slots=True)
class Notice:
    """One flag change to tell: the envelope (previous → new, actor, reason, time) and its flag's kind and group."""

    envelope: Envelope
    kind: FlagKind | None  # None when the definition is not (yet) known
    group: str | None

    @property
    def flag_key(self) -> str:
        assert self.envelope.flag_key is not None  # only flag changes become notices
        return self.envelope.flag_key

    @property
    def level(self) -> Level | None:
        """The level of the setting changed; None for the flag's definition (defined, updated, killed...)."""
        change = self.envelope.data
        assert isinstance(change, FlagChange)
        scope = change.scope
        return None if scope is None else scope.level

    @property
    def scope_text(self) -> str:
        change = self.envelope.data
        assert isinstance(change, FlagChange)
        scope = change.scope
        if scope is None:
            return "definition"
        parts = [f"org {scope.org_id}"] if scope.org_id is not None else ["system default"]
        if scope.platform is not None:
            parts.append(f"platform {scope.platform}")
        if scope.user_id is not None:
            parts.append(f"user {scope.user_id}")
        return " · ".join(parts)

    @property
    def bulk_key(self) -> tuple[str, str, str]:
        """Changes made by one command share actor, reason and instant: one bulk change."""
        e = self.envelope
        return (e.actor.id, e.reason, e.occurred_at.isoformat())


class NoticeFeed:
    """Folds every event it is shown; answers the notice for a flag change that is new to the fold."""

    def __init__(self, state: FlagState | None = None) -> None:
        self.state = state if state is not None else FlagState()

    def observe(self, envelope: Envelope) -> Notice | None:
        """Fold `envelope`; None for a duplicate, a key event, or an event the fold refuses."""
        try:
            applied = self.state.apply(envelope)
        except FlagError:
            return None  # the projector dead-letters it; nobody is told of a change that did not happen
        if not applied or envelope.flag_key is None:
            return None
        definition = self.state.catalog.definitions.get(envelope.flag_key)
        if definition is None:
            return Notice(envelope, None, None)
        return Notice(envelope, definition.kind, definition.group)


def describe(value: dict[str, Any] | None) -> str:
    """A stream value in a few words: `on, 25%`, `variant green`, `unset`, `ops flag, group ops, killed`."""
    if value is None:
        return "unset"
    if {"enabled", "rollout_percentage", "variant", "split"} & value.keys():
        words = []
        if value.get("enabled") is not None:
            words.append("on" if value["enabled"] else "off")
        if value.get("rollout_percentage") is not None:
            words.append(f"{value['rollout_percentage']}%")
        if value.get("variant") is not None:
            words.append(f"variant {value['variant']}")
        if value.get("split"):  # weights in thousandths: 300 is 30%
            words.append("split " + " / ".join(f"{arm['name']} {arm['weight'] / 10:g}%" for arm in value["split"]))
        if value.get("schedule"):
            words.append(f"{len(value['schedule'])} scheduled")
        return ", ".join(words) or "unset"
    typed = f" ({value['value_type']})" if value.get("value_type") else ""  # a typed flag's type
    words = [f"{value.get('kind', '?')} flag{typed}", f"group {value.get('group', '?')}"]
    if value.get("killed"):
        words.append("killed")
    if value.get("archived"):
        words.append("archived")
    return ", ".join(words)
