"""Schedules, variants and the kill switch survive projector rows → cached documents → compiled rules."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import pytest

from events import (
    FlagDefined,
    FlagKind,
    KillSwitchEngaged,
    Level,
    OrgOverrideSet,
    PlatformOverrideSet,
    SettingScheduled,
    SystemDefaultSet,
    Variant,
)
from flagcore import TenantRules, evaluate, fold
from services.projector.rows import definition_row, override_key, setting_row
from services.query.documents import (
    catalog_document,
    compile_catalog,
    compile_org,
    dumps,
    org_document,
)
from tests.support.factories import T0, LogBuilder

EXP, OPS, REL = "exp.checkout", "platform.meta.enabled", "ai.insights.enabled"
T = T0 + timedelta(hours=1)
TICK = timedelta(microseconds=1)


def build_log() -> list:
    arms = (Variant(name="a", weight=300), Variant(name="b", weight=700))
    log = LogBuilder()
    log.extend(
        [
            FlagDefined(flag_key=EXP, group="exp", kind=FlagKind.EXPERIMENT, variants=arms),
            SystemDefaultSet(flag_key=EXP, enabled=False),
            SettingScheduled(flag_key=EXP, level=Level.SYSTEM, effective_at=T, enabled=True),
            FlagDefined(flag_key=OPS, group="platform", kind=FlagKind.OPS),
            SystemDefaultSet(flag_key=OPS, enabled=True),
            KillSwitchEngaged(flag_key=OPS),
            FlagDefined(flag_key=REL, group="ai", expires_at=datetime(2027, 1, 1, tzinfo=UTC)),
            OrgOverrideSet(flag_key=REL, org_id="acme", enabled=True),
            SettingScheduled(flag_key=REL, level=Level.ORG, org_id="acme", effective_at=T, rollout_percentage=40),
            PlatformOverrideSet(flag_key=REL, org_id="acme", platform="tiktok", enabled=False),
            SettingScheduled(
                flag_key=REL, level=Level.PLATFORM, org_id="acme", platform="tiktok", effective_at=T, enabled=True
            ),
        ]
    )
    return log.events


def documents(events: list) -> tuple:
    """What the projector writes for the last event of each stream, read back as the query service does."""
    last = {e.stream: e for e in events}
    flags, system, overrides = [], [], []
    for envelope in last.values():
        scope = envelope.data.scope
        if scope is None:
            flags.append(definition_row(envelope, envelope.new)._asdict())
        elif scope.level is Level.SYSTEM:
            system.append({"flag_key": envelope.flag_key, **setting_row(envelope, envelope.new)._asdict()})
        else:
            key = override_key(scope, envelope.flag_key)
            overrides.append({**key._asdict(), **setting_row(envelope, envelope.new)._asdict()})
    catalog = compile_catalog(dumps(catalog_document(flags, system)))
    org = compile_org(dumps(org_document("acme", overrides)))
    return catalog, TenantRules("acme", org.org, org.platform)


@pytest.mark.parametrize("now", [T - TICK, T, T + timedelta(days=1)])
@pytest.mark.parametrize(("flag", "platform"), [(EXP, None), (OPS, None), (REL, None), (REL, "tiktok")])
def test_documents_evaluate_like_the_fold_on_both_sides_of_a_boundary(now, flag, platform) -> None:
    events = build_log()
    state = fold(events)
    catalog, tenant = documents(events)
    for user in ("u1", "u2", "u3", "u4"):
        want = evaluate(state.catalog, state.tenant("acme"), flag, platform=platform, user_id=user, now=now)
        got = evaluate(catalog.catalog, tenant, flag, platform=platform, user_id=user, now=now)
        assert (got.value, got.reason, got.level, got.variant, got.killed) == (
            want.value,
            want.reason,
            want.level,
            want.variant,
            want.killed,
        )


def test_listing_shows_kind_variants_expiry_kill_and_schedule() -> None:
    catalog, _ = documents(build_log())
    listing = {f["key"]: f for f in orjson.loads(catalog.listing)["flags"]}
    assert listing[EXP]["variants"] == [{"name": "a", "weight": 300}, {"name": "b", "weight": 700}]
    assert listing[EXP]["system"]["schedule"] == [
        {"at": "2026-01-01T01:00:00Z", "enabled": True, "rollout_percentage": None}
    ]
    assert (listing[OPS]["kind"], listing[OPS]["killed"]) == ("ops", True)
    assert listing[REL]["expires_at"].startswith("2027-01-01T00:00:00")
