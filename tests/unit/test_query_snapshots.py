"""The SDK's bootstrap snapshot (`services.query.snapshots.scope_document`) from the heads and last history rows.

The rows are the ones the projector leaves for a log (each stream's head and its last history row); the
documents must restore (`flagcore.history.restore`) to the fold of that log: definitions, settings at
every level, and targeting rules (their own streams, placed as rules, never as a definition or a setting).
"""

from __future__ import annotations

import uuid
from typing import Any

import orjson

from flagcore import fold
from flagcore.history import SYSTEM_SCOPE, restore
from services.query.snapshots import scope_document
from tests.support.eventlog import EventLog, every_row_log


def _rows(log: EventLog) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    heads: dict[str, dict[str, Any]] = {}
    last: dict[str, dict[str, Any]] = {}
    for e in log.events:
        heads[e.stream] = {"stream": e.stream, "version": e.version, "hash": e.hash}
        last[e.stream] = {
            "version": e.version,
            "new": None if e.new is None else orjson.dumps(e.new).decode(),
            "event_id": uuid.UUID(str(e.event_id)),
            "actor_name": e.actor.name,
            "reason": e.reason,
            "occurred_at": e.occurred_at,
        }
    return list(heads.values()), last


def test_the_snapshot_restores_to_the_fold_rules_included() -> None:
    org = "o1"
    log = every_row_log(org, "o2")
    heads, last = _rows(log)
    docs = {scope: scope_document(scope, heads, last) for scope in (SYSTEM_SCOPE, org)}
    state = fold(log.events)
    restored = restore(orjson.loads(orjson.dumps(docs)))
    assert restored.catalog.definitions == state.catalog.definitions
    assert restored.catalog.system == state.catalog.system
    assert restored.catalog.rules == state.catalog.rules and restored.catalog.rules
    mine, theirs = restored.tenant(org), state.tenant(org)
    assert (mine.org, mine.platform, mine.user) == (theirs.org, theirs.platform, theirs.user)
    assert mine.rules == theirs.rules and set(mine.rules) == {"c.theme"}
    assert [k for k, _ in docs[SYSTEM_SCOPE]["rules"]] == ["c.release"]


def test_a_scope_without_rules_has_no_rules_entry() -> None:
    """As `flagcore.history.snapshot` writes it: snapshots of a state without rules keep their bytes."""
    heads, last = _rows(every_row_log("o1", "o2"))
    assert "rules" not in scope_document("o-none", heads, last)
    assert "rules" not in scope_document("o2", heads, last)  # set, then emptied: its head stays, nothing placed
