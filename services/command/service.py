"""Running a command: read the heads, decide, append; retry when a concurrent write wins.

The decision is always made on the head the append is checked against: a
request without `expected_version` still appends with the version it read, and
is re-decided on the new head when it loses a race, so last-writer-wins never
records a stale `previous` or re-applies a no-op. This is the command side's one
retry: the store tries each append once and reports a lost race as `VersionConflict`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from events import Envelope, definition_stream
from flagcore import StreamHead
from services.command.commands import AnyCommand
from services.command.errors import VersionConflict
from services.command.handlers import decide
from services.command.ports import EventStore
from services.infra.tenancy import Tenancy

ATTEMPTS = 3


@dataclass(frozen=True, slots=True)
class Outcome:
    changed: bool
    stream: str
    version: int
    events: Sequence[Envelope] = field(default_factory=tuple)


def utc_now() -> datetime:
    return datetime.now(UTC)


class CommandService:
    def __init__(self, store: EventStore, *, clock: Callable[[], datetime] = utc_now) -> None:
        self.store = store
        self._clock = clock

    def reading_as(self, reader: Tenancy) -> CommandService:
        """The same service, deciding on heads read under `reader` (its appends are under their own tenancy)."""
        return CommandService(self.store.reading_as(reader), clock=self._clock)

    async def execute(self, command: AnyCommand) -> Outcome:
        """Apply `command`; raises `VersionConflict`, `UnknownFlag`, `InvalidCommand`, `InvalidTransition`."""
        stream = command.stream
        attempts = 1 if command.expected_version is not None else ATTEMPTS
        for attempt in range(1, attempts + 1):
            head = await self.store.stream_head(stream)
            if command.expected_version is not None and head.version != command.expected_version:
                raise VersionConflict(stream, head.version, command.expected_version)
            definition = head if command.targets_definition else await self._definition(command)
            now = self._clock()  # the instant decided on is the one the events carry
            changes = decide(command, current=head.value, definition=definition.value, now=now)
            if not changes:
                return Outcome(changed=False, stream=stream, version=head.version)
            try:
                envelopes = await self.store.append(
                    changes,
                    actor=command.actor,
                    reason=command.reason,
                    expected_version=head.version,
                    occurred_at=now,
                )
            except VersionConflict as exc:
                if command.expected_version is not None:
                    raise
                if attempt == attempts:
                    raise VersionConflict(stream, exc.current_version, None) from exc
                continue
            return Outcome(changed=True, stream=stream, version=envelopes[-1].version, events=envelopes)
        raise AssertionError("unreachable")  # pragma: no cover

    async def stream_head(self, stream: str) -> StreamHead:
        return await self.store.stream_head(stream)

    async def _definition(self, command: AnyCommand) -> StreamHead:
        return await self.store.stream_head(definition_stream(command.flag_key))
