"""Snapshots: the query service's bootstrap document and the client's file both restore the fold exactly."""

from __future__ import annotations

import orjson
import pytest

from events import (
    FlagDefined,
    Level,
    OrgOverrideCleared,
    OrgOverrideSet,
    PlatformOverrideSet,
    RolloutPercentageSet,
    SystemDefaultSet,
    UserOverrideSet,
)
from flagcore import FlagState, evaluate, fold
from flagcore.history import SYSTEM_SCOPE
from flagsdk import SnapshotError
from flagsdk.snapshot import dump, parse
from services.query.snapshots import scope_document
from tests.support.factories import LogBuilder

ORG = "acme"
A, B = "ai.insights.enabled", "campaign.publishing.enabled"
CONTEXTS = [(None, None), ("meta", None), ("tiktok", "u-1"), (None, "u-1"), (None, "u-2"), ("meta", "u-3")]


def log() -> LogBuilder:
    builder = LogBuilder()
    builder.extend([
        FlagDefined(flag_key=A, group="ai"),
        FlagDefined(flag_key=B, group="campaign"),
        SystemDefaultSet(flag_key=B, enabled=True),
        OrgOverrideSet(flag_key=A, org_id=ORG, enabled=True),
        RolloutPercentageSet(flag_key=A, level=Level.ORG, org_id=ORG, percentage=40),
        PlatformOverrideSet(flag_key=A, org_id=ORG, platform="meta", enabled=False),
        UserOverrideSet(flag_key=A, org_id=ORG, user_id="u-1", enabled=True),
        OrgOverrideSet(flag_key=B, org_id=ORG, enabled=False),
        OrgOverrideCleared(flag_key=B, org_id=ORG),  # a cleared stream keeps its head
        OrgOverrideSet(flag_key=A, org_id="globex", enabled=False),
    ])
    return builder


def answers(state: FlagState) -> list[tuple]:
    tenant = state.tenant(ORG)
    return [
        (e.value, e.reason, e.level, e.variant, e.source)
        for key in (A, B, "no.such.flag")
        for platform, user in CONTEXTS
        if (e := evaluate(state.catalog, tenant, key, platform=platform, user_id=user))
    ]


def test_the_client_file_round_trips_the_org_and_its_positions() -> None:
    state = fold(log().events)
    restored = parse(dump(state, org_id=ORG, topic="t", offsets={0: 7, 2: 3}), org_id=ORG)
    assert answers(restored.state) == answers(state)
    assert restored.offsets == {0: 7, 2: 3} and restored.topic == "t"
    assert "globex" not in restored.state.tenants  # only the client's org travels
    assert restored.state.heads[f"org/{ORG}/flag/{B}"].version == 2  # and the cleared stream's head


def test_the_bootstrap_document_from_read_model_rows_restores_the_same_state() -> None:
    builder = log()
    state = fold(builder.events)
    visible = [e for e in builder.events if e.org_id in (None, ORG)]  # what RLS lets the query role see
    heads = [{"stream": s, "version": h.version, "hash": h.hash} for s, h in state.heads.items()
             if s.startswith("flag/") or s.startswith(f"org/{ORG}/")]
    last = {
        e.stream: {"stream": e.stream, "version": e.version, "new": None if e.new is None else orjson.dumps(e.new),
                   "event_id": e.event_id, "actor_name": e.actor.name, "reason": e.reason,
                   "occurred_at": e.occurred_at}
        for e in visible
    }
    document = {
        "org_id": ORG, "topic": "t", "offsets": {"0": 12},
        "scopes": {scope: scope_document(scope, heads, last) for scope in (SYSTEM_SCOPE, ORG)},
    }
    restored = parse(orjson.dumps(document), org_id=ORG)
    assert answers(restored.state) == answers(state)
    assert {s: h.version for s, h in restored.state.heads.items()} == {h["stream"]: h["version"] for h in heads}


@pytest.mark.parametrize("raw", [b"not json", b"{}", b'{"org_id": "acme"}', b'{"org_id": "globex", "scopes": {}}'])
def test_an_unreadable_or_foreign_snapshot_is_refused(raw: bytes) -> None:
    with pytest.raises(SnapshotError):
        parse(raw, org_id=ORG)
