"""The stale-flag report on the command side: fold the whole log, then ask the pure core.

The report needs every tenant's settings (a flag is only "fully on" if no org
runs a partial rollout of it), so it is for system-wide readers only, whose
store reads the event store cross-tenant (`services.command.tenancy.reader_for`). Reading the log page by page
and folding it is the same code the SDK and the tests run, so the report cannot
disagree with evaluation.
"""

from __future__ import annotations

from datetime import datetime

from events import decode
from flagcore import FlagState, StaleFlag, stale_flags
from services.command.ports import EventStore

PAGE = 1000


async def fold_log(store: EventStore) -> FlagState:
    state = FlagState()
    after = 0
    while True:
        page = await store.list_events(after=after, limit=PAGE)
        for stored in page:
            state.apply(decode(stored.body))
        if len(page) < PAGE:
            return state
        after = page[-1].sequence


async def stale_report(store: EventStore, *, now: datetime, days: int) -> list[StaleFlag]:
    return stale_flags(await fold_log(store), now=now, days=days)
