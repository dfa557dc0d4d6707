"""Rollback: put streams back to their value as of an instant or a version, by appending ordinary changes.

History is never edited. For each stream the goal is read from the log: the
on/off value, rollout and selection (the variant or split the level serves) in
force at the instant (after the stream's last event at or before it, with the
scheduled steps due by then applied), or right after the given version. A
`SetSetting` or `ClearOverride` reaches it, then every step scheduled since the
target (pending now, not pending then) is cancelled; steps are never re-created.
A level's targeting rules get their list back whole (a `SetRules`). A definition
gets its attributes (kind, description, owner, group, variants or
a typed flag's variants and their values, default and off variants, expiry) and
kill switch back by an `UpdateFlag` and, if need be, a kill-switch change;
archiving is final.

Each change goes through the same `CommandService` as any other, with the
stream's current version as `expected_version`: a change that lands meanwhile
makes the rollback a 409 instead of overwriting it. Every goal is read before
anything is written, so a bad target writes nothing; a conflict part-way leaves
the streams before it rolled back, and running the same rollback again
finishes the job (streams already at their goal are left alone).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Protocol

from events import Actor, Envelope, FlagKind, Level
from events.changes import Variant
from flagcore.instants import parse_instant
from flagcore.model import Setting
from flagcore.transitions import Value, caught_up
from services.command.commands import (
    UNSET,
    AnyCommand,
    CancelScheduledSetting,
    ClearOverride,
    EngageKillSwitch,
    ReleaseKillSwitch,
    SetRules,
    SetSetting,
    UpdateFlag,
)
from services.command.errors import InvalidCommand
from services.command.history import HistoryLevel, level_of, rules_scope, setting_scope
from services.command.ports import StoredValue
from services.command.service import CommandService, utc_now

__all__ = ["RollbackTarget", "StreamRollback", "ValueReader", "rollback", "rollback_reason"]


class ValueReader(Protocol):
    async def value_as_of(self, stream: str, at: datetime) -> StoredValue: ...

    async def value_at_version(self, stream: str, version: int) -> StoredValue | None: ...


@dataclass(frozen=True, slots=True)
class RollbackTarget:
    """An instant (every stream as it stood then) or a version (of one stream)."""

    at: datetime | None = None
    version: int | None = None

    def __post_init__(self) -> None:
        if (self.at is None) == (self.version is None):
            raise ValueError("a rollback target is an instant or a version, exactly one")

    @property
    def label(self) -> str:
        if self.at is not None:
            return self.at.astimezone(UTC).isoformat().replace("+00:00", "Z")
        return f"version {self.version}"


def rollback_reason(target: RollbackTarget, reason: str) -> str:
    return f"rollback to {target.label}: {reason}"


@dataclass(frozen=True, slots=True)
class StreamRollback:
    stream: str
    goal_version: int  # the version whose value was restored (0: the stream was empty then)
    value: dict[str, Any] | None  # the value in force at the target
    version: int  # the stream's version now
    events: Sequence[Envelope] = ()

    @property
    def changed(self) -> bool:
        return bool(self.events)


async def rollback(
    service: CommandService,
    reader: ValueReader,
    streams: Sequence[str],
    target: RollbackTarget,
    *,
    reason: str,
    actor: Actor,
) -> list[StreamRollback]:
    """Restore each setting stream in `streams`; raises `InvalidCommand` (naming `version`) for a missing version."""
    goals: list[tuple[str, StoredValue]] = []
    for stream in streams:
        if target.version is not None:
            found = await reader.value_at_version(stream, target.version)
            if found is None:
                head = await service.stream_head(stream)
                raise InvalidCommand(f"{stream} has versions 1..{head.version}, not {target.version}", field="version")
            goals.append((stream, found))
        else:
            assert target.at is not None
            goals.append((stream, await reader.value_as_of(stream, target.at)))
    field = "version" if target.version is not None else "at"
    for stream, (_, value) in goals:  # what cannot be undone is refused before anything is written
        level = level_of(stream)
        if level not in _UNCLEARABLE:
            continue
        now = (await service.stream_head(stream)).value
        if value is None and now:
            detail = f"{stream} was empty then; a definition or a system default cannot be removed"
            raise InvalidCommand(detail, field=field)
        unsettable = level is HistoryLevel.SYSTEM and _switched(value, target.at) is None
        if unsettable and _switched(now, utc_now()) is not None:
            detail = f"{stream} was not switched on or off then; a system default cannot be unset"
            raise InvalidCommand(detail, field=field)
    text = rollback_reason(target, reason)
    done = []
    for stream, (version, value) in goals:
        if level_of(stream) is HistoryLevel.DEFINITION:
            done.append(await _restore_definition(service, stream, version, value, reason=text, actor=actor))
        elif rules_scope(stream) is not None:
            done.append(await _restore_rules(service, stream, version, value, reason=text, actor=actor))
        else:  # a stored value may hold steps that fell due before the target: apply them
            goal = caught_up(value, target.at)
            done.append(await _restore(service, stream, version, goal, reason=text, actor=actor))
    return done


_UNCLEARABLE = (HistoryLevel.DEFINITION, HistoryLevel.SYSTEM)


async def _restore_definition(
    service: CommandService, stream: str, goal_version: int, goal: Value, *, reason: str, actor: Actor
) -> StreamRollback:
    """A flag's descriptive attributes and kill switch as they were (archiving is final, so never undone)."""
    flag_key = stream.removeprefix("flag/")
    meta: dict[str, Any] = {"flag_key": flag_key, "reason": reason, "actor": actor}
    head = await service.stream_head(stream)
    if goal is None or head.value is None or head.value == goal:
        return StreamRollback(stream, goal_version, goal, head.version)
    steps: list[AnyCommand] = []
    if head.value.get("killed") and not goal.get("killed"):
        steps.append(ReleaseKillSwitch(**meta))  # first: the kind may only leave ops once released
    typed = "value_type" in goal  # a typed flag's variants are its values; a boolean's, its experiment arms
    steps.append(
        UpdateFlag(
            kind=FlagKind(goal["kind"]),
            description=goal["description"],
            owner=goal.get("owner"),
            group=goal["group"],
            variants=UNSET if typed else tuple(Variant(**v) for v in goal.get("variants") or ()),
            values=goal["values"] if typed else UNSET,
            default_variant=goal["default_variant"] if typed else UNSET,
            off_variant=goal["off_variant"] if typed else UNSET,
            expires_at=parse_instant(goal["expires_at"]) if goal.get("expires_at") else None,
            **meta,
        )
    )
    if goal.get("killed") and not head.value.get("killed"):
        steps.append(EngageKillSwitch(**meta))
    events: list[Envelope] = []
    for step in steps:
        outcome = await service.execute(replace(step, expected_version=head.version))
        events += outcome.events
        head = await service.stream_head(stream)
    return StreamRollback(stream, goal_version, goal, head.version, events)


async def _restore(
    service: CommandService, stream: str, goal_version: int, goal: Value, *, reason: str, actor: Actor
) -> StreamRollback:
    """The values in force at the target, then the steps scheduled since cancelled, each checked against its head."""
    found = setting_scope(stream)
    if found is None:
        raise InvalidCommand(f"{stream} is not a setting stream and cannot be rolled back", field="stream")
    scope, flag_key = found
    meta: dict[str, Any] = {"scope": scope, "flag_key": flag_key, "reason": reason, "actor": actor}
    events: list[Envelope] = []
    head = await service.stream_head(stream)
    if _in_force(caught_up(head.value, utc_now())) != _in_force(goal):
        command: AnyCommand
        if goal is None:
            command = ClearOverride(expected_version=head.version, **meta)
        else:
            enabled, rollout, selection = _in_force(goal)
            command = SetSetting(
                # a system default that was never switched is left so (`rollback` refused the other case)
                enabled=UNSET if enabled is None and scope.level is Level.SYSTEM else enabled,
                rollout_percentage=rollout,
                variant=selection.get("variant"),
                split=tuple(Variant(**arm) for arm in selection["split"]) if "split" in selection else None,
                expected_version=head.version,
                **meta,
            )
        events += (await service.execute(command)).events
        head = await service.stream_head(stream)
    kept = (goal or {}).get("schedule") or []
    for step in (caught_up(head.value, utc_now()) or {}).get("schedule") or []:
        if step not in kept:
            at = parse_instant(step["at"])
            cancel = CancelScheduledSetting(effective_at=at, expected_version=head.version, **meta)
            events += (await service.execute(cancel)).events
            head = await service.stream_head(stream)
    return StreamRollback(stream, goal_version, goal, head.version, events)


async def _restore_rules(
    service: CommandService, stream: str, goal_version: int, goal: Value, *, reason: str, actor: Actor
) -> StreamRollback:
    """A level's targeting rules as they were: the list then, set again whole (none then: cleared)."""
    found = rules_scope(stream)
    assert found is not None
    scope, flag_key = found
    head = await service.stream_head(stream)
    events: list[Envelope] = []
    if head.value != goal:
        rules = tuple((goal or {}).get("rules") or ())
        command = SetRules(
            scope=scope, flag_key=flag_key, rules=rules, expected_version=head.version, reason=reason, actor=actor
        )
        events += (await service.execute(command)).events
        head = await service.stream_head(stream)
    return StreamRollback(stream, goal_version, goal, head.version, events)


def _switched(value: Value, at: datetime | None) -> bool | None:
    """A system default's on/off in force at `at` (None: never switched, only a rollout or a selection)."""
    return _in_force(caught_up(value, at))[0]


def _in_force(value: Value) -> tuple[bool | None, int | None, dict[str, Any]]:
    """On/off, rollout and selection: what a rollback restores of a setting."""
    setting = Setting.from_value(value or {})
    return setting.enabled, setting.rollout_percentage, setting.selection()
