"""The time-travel use case: an org's flags as of an instant, and what changed between two.

The state is the nearest verified snapshot of the system scope and of the org, plus
the events after each up to the instant, folded by `flagcore.fold`; answers come from
`flagcore.evaluate`, so they are what the live service answered then. A snapshot that
fails its check against the log is skipped (and logged); the fold then starts earlier.
The routes read through `reading_as(reader_for(caller))`, so an org's auditor folds under
its org's tenancy (row-level security), a system-wide one cross-tenant.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol, Self

from events import Envelope, Scope, segment_stream
from flagcore import FlagState, fold
from flagcore.history import SYSTEM_SCOPE, FlagView, diff_views, org_view, restore
from services.command.eventstore.parts import Part
from services.command.timetravel.errors import BadInstant, UnknownFlag, UnknownOrg
from services.infra.tenancy import Tenancy

log = logging.getLogger(__name__)


class History(Protocol):
    def reading_as(self, reader: Tenancy) -> Self: ...
    async def org_known(self, org_id: str) -> bool: ...
    async def nearest_part(
        self, scope: str, instant: datetime, prefixes: tuple[str, ...] | None = None
    ) -> Part | None: ...
    async def part_is_sound(self, part: Part) -> bool: ...
    async def events(
        self, scope: str, *, after: int, until: datetime, prefixes: tuple[str, ...] | None = None
    ) -> list[Envelope]: ...


@dataclass(frozen=True, slots=True)
class Asked:
    """Whose view: the org, and optionally the platform and the user."""

    org_id: str
    platform: str | None = None
    user_id: str | None = None

    def streams(self) -> tuple[str, ...]:
        """Prefixes of the org's streams this view reads: its org level, platform and user, and its segments."""
        scopes = [Scope.org(self.org_id)]
        if self.platform is not None:
            scopes.append(Scope.for_platform(self.org_id, self.platform))
        if self.user_id is not None:
            scopes.append(Scope.user(self.org_id, self.user_id))
        return (*(scope.stream("") for scope in scopes), segment_stream(self.org_id, ""))


class TimeTravel:
    def __init__(self, history: History, *, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._history = history
        self._clock = clock
        self._verified: set[tuple[str, int]] = set()  # parts are immutable: one check per process

    def reading_as(self, reader: Tenancy) -> TimeTravel:
        """The same time travel, its reads under `reader`; a part checked once is sound for every reader."""
        view = TimeTravel(self._history.reading_as(reader), clock=self._clock)
        view._verified = self._verified
        return view

    async def state_at(self, asked: Asked, instant: datetime, *, field: str = "at") -> FlagState:
        """The fold up to `instant` of the system's flag events and of the org's that `asked` reads.

        Only the streams of the view (org level, its platform, its user) are restored and
        folded: what the view's answers depend on, and far less than a large org's whole log.
        """
        try:
            instant = instant.astimezone(UTC)
        except OverflowError:
            raise BadInstant(f"{field} is out of range once converted to UTC", field) from None
        if instant > self._clock():
            raise BadInstant(f"{field} is in the future; the log only knows the past", field)
        # The three reads are independent: in flight together (on separate connections), folded in order.
        known, system, org = await asyncio.gather(
            self._history.org_known(asked.org_id),
            self._read_scope(SYSTEM_SCOPE, instant, None),
            self._read_scope(asked.org_id, instant, asked.streams()),
        )
        if not known:
            raise UnknownOrg(f"org {asked.org_id!r} has no flag events", "org")
        state = FlagState()
        for scope, (part, events, prefixes) in ((SYSTEM_SCOPE, system), (asked.org_id, org)):
            if part is not None:
                keep = None if prefixes is None else lambda stream, p=prefixes: stream.startswith(p)
                restore({scope: part.doc}, state, keep=keep)
            fold(events, state)
        return state

    async def _read_scope(
        self, scope: str, instant: datetime, prefixes: tuple[str, ...] | None
    ) -> tuple[Part | None, list[Envelope], tuple[str, ...] | None]:
        """The scope's nearest trusted snapshot and its later events up to `instant` (the view's streams)."""
        part = await self._history.nearest_part(scope, instant, prefixes)
        after = part.sequence if part else 0
        later = self._history.events(scope, after=after, until=instant, prefixes=prefixes)
        if part is None or (scope, part.sequence) in self._verified:
            return part, await later, prefixes
        # A part's first use: its check against the log and the reading of its later events, at once.
        sound, events = await asyncio.gather(self._history.part_is_sound(part), later)
        if sound:
            self._verified.add((scope, part.sequence))
            return part, events, prefixes
        log.error("snapshot of scope %r at sequence %d disagrees with the log; folding from 0", scope, part.sequence)
        return None, await self._history.events(scope, after=0, until=instant, prefixes=prefixes), prefixes

    async def at(self, asked: Asked, instant: datetime, flag_key: str | None = None) -> dict[str, FlagView]:
        """Every flag (or one) as `asked` saw it at `instant`."""
        state = await self.state_at(asked, instant)
        views = org_view(state, asked.org_id, now=instant, platform=asked.platform, user_id=asked.user_id)
        if flag_key is None:
            return views
        if flag_key not in views:
            raise UnknownFlag(f"flag {flag_key!r} was not defined at {instant.isoformat()}", "flag")
        return {flag_key: views[flag_key]}

    async def diff(
        self, asked: Asked, since: datetime, until: datetime
    ) -> list[tuple[str, FlagView | None, FlagView | None]]:
        """The flags whose answer, deciding event or any level's setting differ between the two instants."""
        if until < since:
            raise BadInstant("to is before from", "to")
        before, after = await asyncio.gather(
            self.state_at(asked, since, field="from"), self.state_at(asked, until, field="to")
        )
        p, u = asked.platform, asked.user_id
        return diff_views(
            org_view(before, asked.org_id, now=since, platform=p, user_id=u),
            org_view(after, asked.org_id, now=until, platform=p, user_id=u),
        )
