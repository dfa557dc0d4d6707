"""The rebuild's fast decoder (`decode_fast`) gives exactly what the live projector's `decode_record` gives.

For every event type and every upcast schema version, sound or broken, canonical
or not, resealed or not: the same `Decoded` (envelope, scope, value) or the same
`DeadLetter` (same reason), and folding the decoded events gives the same rows.
The plain setting events must actually take the fast path, or these tests would
prove nothing.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from events import (
    ApiKeyCreated,
    DecodeError,
    FlagArchived,
    FlagDefined,
    FlagKind,
    FlagUpdated,
    KeyRole,
    KillSwitchEngaged,
    KillSwitchReleased,
    Level,
    Platform,
    ScheduledSettingCancelled,
    SettingScheduled,
    ValueType,
    Variant,
    VariantSelected,
    canonical_json,
    decode,
    hash_of,
    to_record,
)
from events.cloudevents import SPEC_VERSION, TYPE_PREFIX
from flaglog import DeadLetter, Decoded, decode_event, decode_fast, decode_record, fastdecode
from services.projector.tenant_plan import group_by_tenant, plan_tenant
from tests.support.eventlog import EventLog, random_log
from tests.support.garbage import SOUND, TOPIC, GarbageRecord, bad_records, json_values, sound_records

many = settings(max_examples=300, deadline=None)
FAST_TYPES = set(fastdecode.FAST_TYPES)


def same(record: GarbageRecord) -> Decoded | DeadLetter | None:
    """Decode both ways (the record, and its body alone as time travel does), assert equal, return the full path's."""
    full, fast = decode_record(record), decode_fast(record)
    assert type(fast) is type(full), (record.kind, full, fast)
    if isinstance(full, Decoded):
        assert isinstance(fast, Decoded)
        assert fast.record is full.record
        assert fast.envelope.model_dump() == full.envelope.model_dump()
        assert fast.envelope == full.envelope
        assert type(fast.envelope.data) is type(full.envelope.data)
        assert (fast.scope, fast.value) == (full.scope, full.value)
    else:
        assert fast == full
    if record.value is not None:
        assert _decoded(decode_event, record.value) == _decoded(decode, record.value)
    return full


def _decoded(decoder: Any, body: bytes) -> Any:
    """What `decoder` makes of `body`: the envelope's fields, or the reason it was refused."""
    try:
        return decoder(body).model_dump()
    except DecodeError as exc:
        return exc.reason


def took_fast_path(record: GarbageRecord) -> bool:
    try:
        fastdecode._decode(record)
    except Exception:
        return False
    return True


def garbage(record: Any, kind: str = "sound") -> GarbageRecord:
    return GarbageRecord(TOPIC, 0, 0, record.key, record.value, tuple(record.headers), kind)


def every_type_log() -> EventLog:
    """Every flag event type, at every level, with schedules in `previous`/`new`, and an API key event."""
    log = random_log(60, orgs=["org-a", "org-b"], flags=3, users=2, seed=11)
    ops = "ops.switch"
    log.add(FlagDefined(flag_key=ops, group="ops", kind=FlagKind.OPS, description="ops"))
    log.add(FlagUpdated(flag_key=ops, group="ops", kind=FlagKind.OPS, description="now described"))
    log.add(KillSwitchEngaged(flag_key=ops))
    log.add(KillSwitchReleased(flag_key=ops))
    log.org("org-a", ops, True)
    when = datetime(2030, 1, 1, tzinfo=UTC)
    for level, org, user in [(Level.ORG, "org-a", None), (Level.USER, "org-a", "u-1"), (Level.SYSTEM, None, None)]:
        log.add(SettingScheduled(flag_key=ops, level=level, org_id=org, user_id=user, effective_at=when, enabled=False))
        log.add(
            SettingScheduled(flag_key=ops, level=level, org_id=org, user_id=user, effective_at=when + timedelta(days=1),
                             rollout_percentage=30)
        )  # fmt: skip
        log.add(ScheduledSettingCancelled(flag_key=ops, level=level, org_id=org, user_id=user, effective_at=when))
    log.org("org-a", ops, False)  # `previous` carries a schedule: the full path decides
    log.add(FlagArchived(flag_key=ops))
    theme = {"flag_key": "typed.theme", "group": "ui", "value_type": ValueType.STRING,
             "values": {"blue": "#00f", "red": "#f00"}, "default_variant": "blue", "off_variant": "red"}  # fmt: skip
    log.add(FlagDefined(description="a typed flag", **theme))  # type: ignore[arg-type]
    log.add(FlagUpdated(kind=FlagKind.RELEASE, description="described again", **theme))  # type: ignore[arg-type]
    split = (Variant(name="blue", weight=250), Variant(name="red", weight=750))
    log.add(VariantSelected(flag_key="typed.theme", level=Level.SYSTEM, variant="red"))
    log.add(VariantSelected(flag_key="typed.theme", level=Level.ORG, org_id="org-a", split=split))
    log.add(VariantSelected(flag_key="typed.theme", level=Level.PLATFORM, org_id="org-a", platform=Platform.META,
                            variant="red"))  # fmt: skip
    log.add(VariantSelected(flag_key="typed.theme", level=Level.USER, org_id="org-b", user_id="u-1", variant="blue"))
    log.org("org-a", "typed.theme", True)  # `previous` carries a split: the full path decides
    log._builder.append(ApiKeyCreated(key_id="0123456789abcdef", org_id="org-a", name="k", role=KeyRole.AUDITOR))
    return log


EVERY_TYPE = [garbage(r) for r in every_type_log().records()]


def upcast_record(event_type: str, version: int, data: dict[str, Any]) -> GarbageRecord:
    """A record written by an older producer: schema `version` of `event_type`, canonical, sealed."""
    fields = {
        "event_id": "0b7e6f1c-3a55-4a0e-9a53-2f1b1f6f0c10",
        "type": event_type, "schema_version": version, "stream": "flag/old.flag", "version": 1, "sequence": 1,
        "occurred_at": "2025-11-20T10:00:00Z", "org_id": None, "flag_key": "old.flag",
        "actor": {"id": "u1", "name": "ops"}, "reason": "seed", "previous": None, "new": None,
        "data": {"type": event_type, "flag_key": "old.flag", **data}, "prev_hash": "0" * 64,
    }  # fmt: skip
    fields["hash"] = hash_of(fields)
    headers = (
        ("ce_specversion", SPEC_VERSION.encode()),
        ("ce_id", fields["event_id"].encode()),
        ("ce_type", f"{TYPE_PREFIX}{event_type}.v{version}".encode()),
    )
    return GarbageRecord(TOPIC, 0, 0, b"_system", canonical_json(fields), headers, f"{event_type} v{version}")


UPCASTS = [
    upcast_record("FlagDefined", 1, {"description": "v1"}),
    upcast_record("FlagDefined", 2, {"kind": "ops", "owner": "sre", "group": "old", "description": ""}),
    upcast_record("FlagUpdated", 1, {"kind": "release", "owner": None, "group": "old", "description": "x"}),
]


# --- tables: every type, every upcast version ------------------------------------------------------


@pytest.mark.parametrize("record", EVERY_TYPE + SOUND, ids=lambda r: json.loads(r.value)["type"])
def test_every_event_type_decodes_the_same_both_ways(record: GarbageRecord) -> None:
    item = same(record)
    kind = json.loads(record.value or b"{}")["type"]
    assert isinstance(item, Decoded) or (item is None and kind.startswith("ApiKey"))


@pytest.mark.parametrize("record", UPCASTS, ids=lambda r: r.kind)
def test_an_old_schema_version_is_upcast_by_the_full_path(record: GarbageRecord) -> None:
    assert not took_fast_path(record)
    item = same(record)
    assert isinstance(item, Decoded)


def test_the_plain_setting_events_take_the_fast_path_and_nothing_else_does() -> None:
    for record in EVERY_TYPE + SOUND:
        fields = json.loads(record.value or b"{}")
        plain = all(
            v is None or set(v) == {"enabled", "rollout_percentage"} for v in (fields["previous"], fields["new"])
        )
        assert took_fast_path(record) == (fields["type"] in FAST_TYPES and plain), fields["type"]
    assert sum(took_fast_path(r) for r in EVERY_TYPE) > 40


def test_folding_gives_the_same_rows_both_ways() -> None:
    records = [garbage(r) for r in random_log(400, orgs=["o-1", "o-2", "o-3"], flags=5, users=4, seed=3).records()]
    records = [GarbageRecord(TOPIC, 0, i, r.key, r.value, r.headers) for i, r in enumerate(records)]

    def rows(decoder: Any) -> list[Any]:
        decoded = [d for d in map(decoder, records) if isinstance(d, Decoded)]
        plans = [plan_tenant(org, items, {}) for org, items in group_by_tenant(decoded).items()]
        return [(p.org_id, p.heads, p.definitions, p.system, p.overrides, p.history, p.invalidations) for p in plans]

    assert rows(decode_fast) == rows(decode_record)


# --- properties: broken records, canonical or not ---------------------------------------------------


@many
@given(bad_records())
def test_a_bad_record_is_dead_lettered_with_the_same_reason(record: GarbageRecord) -> None:
    assert isinstance(same(record), DeadLetter)


def _resealed(base: GarbageRecord, fields: dict[str, Any], kind: str) -> GarbageRecord:
    """`fields` sealed and written canonically, as a producer (or forger) would: what the fast path reads."""
    fields["hash"] = hash_of(fields)
    return GarbageRecord(base.topic, base.partition, base.offset, base.key, canonical_json(fields), base.headers, kind)


def _paths(fields: dict[str, Any]) -> list[tuple[str, ...]]:
    paths: list[tuple[str, ...]] = [(name,) for name in fields if name != "hash"]
    for name in ("data", "actor", "previous", "new"):
        if isinstance(fields.get(name), dict):
            paths += [(name, inner) for inner in fields[name]]
    return paths


# Values that sit at the edges of what the models accept, for every field the fast path checks itself.
EDGE_VALUES: list[Any] = [
    None, True, False, 0, 1, -1, 1.0, 50, 100, 101, 2**31, 2**63, "", " ", "x", " x", "x ", "x\n", "org-1\n",
    "ORG_1", "a" * 64, "a" * 65, "u@x.io", "meta", "META", "system", "org", "platform", "user",
    "2026-01-01T00:00:00Z", "2026-01-01T00:00:00.5Z", "2026-01-01T00:00:00+00:00", "2026-01-01T24:00:00Z",
    "0b7e6f1c-3a55-4a0e-9a53-2f1b1f6f0c10", "0B7E6F1C-3A55-4A0E-9A53-2F1B1F6F0C10", "0" * 64, "0" * 63 + "G",
    "fuzz.a", "Fuzz.a", "fuzz.a.", {"enabled": True, "rollout_percentage": None}, {"enabled": 1}, [], {},
    "-u", "u u", "u" * 129, "a" * 101
]  # fmt: skip
EDGES = st.sampled_from(EDGE_VALUES)


@many
@given(sound_records(), st.data())
def test_a_canonical_resealed_change_to_any_field_decodes_the_same(record: GarbageRecord, data: st.DataObject) -> None:
    """One field changed, removed or added, hash recomputed, bytes canonical: past every check of the fast path."""
    fields = json.loads(record.value or b"{}")
    path = data.draw(st.sampled_from([*_paths(fields), ("data", "surprise"), ("surprise",)]))
    target = fields
    for name in path[:-1]:
        target = target[name]
    if data.draw(st.booleans()) and path[-1] in target:
        del target[path[-1]]
    else:
        target[path[-1]] = data.draw(EDGES | json_values(encodable=True))
    same(_resealed(record, fields, f"resealed {'.'.join(path)}"))


@many
@given(sound_records(), st.sampled_from(["ce_specversion", "ce_id", "ce_type", "CE_TYPE"]), st.binary(max_size=50))
def test_a_header_changed_or_repeated_decodes_the_same(record: GarbageRecord, name: str, value: bytes) -> None:
    same(GarbageRecord(TOPIC, 0, 0, record.key, record.value, (*record.headers, (name, value))))
    fields = json.loads(record.value or b"{}")
    same(GarbageRecord(TOPIC, 0, 0, record.key, record.value, (*record.headers, (name, fields["event_id"].encode()))))


@many
@given(sound_records(), st.binary(max_size=12))
def test_another_record_key_decodes_the_same(record: GarbageRecord, key: bytes) -> None:
    same(GarbageRecord(TOPIC, 0, 0, key, record.value, record.headers))


def test_a_sound_record_written_non_canonically_takes_the_full_path() -> None:
    record = next(r for r in SOUND if took_fast_path(r))
    spaced = json.dumps(json.loads(record.value or b"{}"), sort_keys=True).encode()
    changed = GarbageRecord(TOPIC, 0, 0, record.key, spaced, record.headers)
    assert not took_fast_path(changed)
    assert isinstance(same(changed), Decoded)
    assert decode(spaced) == decode(record.value or b"")


def test_a_record_of_the_relay_takes_the_fast_path() -> None:
    log = EventLog()
    log.define("fast.flag")
    envelope = log.org("org-9", "fast.flag", True)
    record = garbage(to_record(envelope))
    assert took_fast_path(record)
    item = same(record)
    assert isinstance(item, Decoded) and item.envelope == envelope


def test_every_field_set_to_every_edge_value_or_removed_decodes_the_same() -> None:
    """Exhaustive over one sound record of each fast type: each field replaced by each edge value, or removed."""
    bases = {json.loads(r.value or b"{}")["type"]: r for r in EVERY_TYPE + SOUND if took_fast_path(r)}
    assert set(bases) == FAST_TYPES
    taken = 0
    for base in bases.values():
        fields = json.loads(base.value or b"{}")
        for path in [*_paths(fields), ("data", "surprise"), ("surprise",)]:
            for value in [*EDGE_VALUES, "removed"]:
                changed = json.loads(base.value or b"{}")
                target = changed
                for name in path[:-1]:
                    target = target[name]
                if value == "removed":
                    target.pop(path[-1], None)
                else:
                    target[path[-1]] = value
                record = _resealed(base, changed, f"{'.'.join(path)} = {value!r}")
                taken += took_fast_path(record)
                same(record)
    assert taken > 100  # the edges the fast path accepts were compared, not only the ones it declines
