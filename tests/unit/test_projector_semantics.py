"""The projector on schedules, kill switches and variants: rows, stored definitions, malformed values."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import orjson

from events import (
    GENESIS_HASH,
    FlagDefined,
    FlagKind,
    FlagUpdated,
    KillSwitchEngaged,
    Level,
    OrgOverrideSet,
    SettingScheduled,
    Variant,
    seal,
    to_record,
)
from flaglog import DeadLetter, Decoded, decode_record
from services.projector.rows import stored_definition
from services.projector.tenant_plan import plan_tenant
from tests.support.factories import ALICE, T0, LogBuilder

KEY = "exp.checkout"
T = T0 + timedelta(hours=1)


@dataclass(frozen=True)
class Rec:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]


def rec(envelope, offset: int = 0) -> Rec:
    r = to_record(envelope)
    return Rec("flags.changes", 0, offset, r.key, r.value, tuple(r.headers))


def test_a_scheduled_override_plans_a_row_with_its_pending_steps() -> None:
    log = LogBuilder()
    log.extend(
        [
            FlagDefined(flag_key=KEY, group="exp"),
            OrgOverrideSet(flag_key=KEY, org_id="acme", enabled=False),
            SettingScheduled(flag_key=KEY, level=Level.ORG, org_id="acme", effective_at=T, enabled=True),
        ]
    )
    items = [decode_record(rec(e, i)) for i, e in enumerate(log.events[1:])]
    assert all(isinstance(i, Decoded) for i in items)
    plan = plan_tenant("acme", items, {})
    (row,) = plan.overrides.values()
    assert (row.enabled, orjson.loads(row.schedule)) == (
        False,
        [{"at": "2026-01-01T01:00:00Z", "enabled": True, "rollout_percentage": None}],
    )


def test_a_step_that_is_not_in_the_future_of_its_event_is_a_dead_letter() -> None:
    step = SettingScheduled(flag_key=KEY, level=Level.ORG, org_id="acme", effective_at=T0, enabled=True)
    pending = [{"at": "2026-01-01T00:00:00Z", "enabled": True, "rollout_percentage": None}]
    forged = seal(  # sealed by hand: the command side would have refused it
        event_id=uuid.uuid4(),
        sequence=1,
        version=1,
        occurred_at=T0 + timedelta(seconds=5),
        actor=ALICE,
        reason="forged",
        previous=None,
        new={"enabled": None, "rollout_percentage": None, "schedule": pending},
        data=step,
        prev_hash=GENESIS_HASH,
    )
    letter = decode_record(rec(forged))
    assert isinstance(letter, DeadLetter) and "not in the future" in letter.reason


def test_definitions_round_trip_through_the_stored_row() -> None:
    arms = (Variant(name="a", weight=400), Variant(name="b", weight=600))
    log = LogBuilder()
    log.extend(
        [
            FlagDefined(
                flag_key=KEY,
                group="exp",
                kind=FlagKind.EXPERIMENT,
                variants=arms,
                expires_at=datetime(2027, 1, 1, tzinfo=UTC),
            ),
        ]
    )
    item = decode_record(rec(log.events[0]))
    plan = plan_tenant(None, [item], {})
    row = plan.definitions[KEY]._asdict()
    assert stored_definition(row) == log.events[0].new
    ops = plan_tenant(
        None,
        [
            decode_record(rec(e, i))
            for i, e in enumerate(
                LogBuilder().extend(
                    [
                        FlagDefined(flag_key="o.x", group="o", kind=FlagKind.OPS),
                        KillSwitchEngaged(flag_key="o.x"),
                        FlagUpdated(flag_key="o.x", group="o", kind=FlagKind.OPS, owner="sre"),
                    ]
                )
            )
        ],
        {},
    )
    assert (ops.definitions["o.x"].killed, ops.definitions["o.x"].owner) == (True, "sre")
