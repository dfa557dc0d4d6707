"""Rollback: put streams back to their value as of an instant or a version, by appending ordinary changes.

History is never edited. For each stream the goal value is read from the log
(the value after its last event at or before the instant, or after the given
version), and a `SetSetting` or `ClearOverride` that reaches it goes through
the same `CommandService` as any change, with the stream's current version as
`expected_version`: a change that lands meanwhile makes the rollback a 409
instead of overwriting it. Every goal is read before anything is written, so
a bad target writes nothing; a conflict part-way leaves the streams before it
rolled back, and running the same rollback again finishes the job (streams
already at their goal are left alone).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from events import Actor, Level
from services.command.audit_store import StoredValue
from services.command.commands import AnyCommand, ClearOverride, SetSetting
from services.command.errors import InvalidCommand
from services.command.history import setting_scope
from services.command.service import CommandService, Outcome

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
    value: dict[str, Any] | None  # the restored value
    outcome: Outcome


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
    text = rollback_reason(target, reason)
    done = []
    for stream, (version, value) in goals:
        head = await service.stream_head(stream)
        if head.value == value:
            outcome = Outcome(changed=False, stream=stream, version=head.version)
        else:
            outcome = await service.execute(_restore(stream, value, head.version, reason=text, actor=actor))
        done.append(StreamRollback(stream, version, value, outcome))
    return done


def _restore(stream: str, value: dict[str, Any] | None, head_version: int, *, reason: str, actor: Actor) -> AnyCommand:
    found = setting_scope(stream)
    if found is None:
        raise InvalidCommand(f"{stream} is not a setting stream and cannot be rolled back", field="stream")
    scope, flag_key = found
    meta: dict[str, Any] = {"flag_key": flag_key, "reason": reason, "actor": actor, "expected_version": head_version}
    if value is None:
        if scope.level is Level.SYSTEM:
            detail = f"the system default of {flag_key} was not set then, and cannot be cleared"
            raise InvalidCommand(detail, field="at")
        return ClearOverride(scope=scope, **meta)
    return SetSetting(
        scope=scope, enabled=value.get("enabled"), rollout_percentage=value.get("rollout_percentage"), **meta
    )
