"""The wire contract: sealing, decoding, tamper detection, upcasting, CloudEvents."""

from __future__ import annotations

import json

import pytest
from cloudevents.core.bindings import kafka as ce_kafka
from pydantic import ValidationError

from events import (
    GENESIS_HASH,
    DecodeError,
    FlagDefined,
    OrgOverrideSet,
    PlatformOverrideSet,
    RolloutPercentageSet,
    Scope,
    SystemDefaultSet,
    canonical_json,
    decode,
    from_record,
    hash_of,
    to_record,
)
from events.vocabulary import Level
from tests.support.factories import LogBuilder

KEY = "ai.insights.enabled"


@pytest.fixture
def log() -> LogBuilder:
    builder = LogBuilder()
    builder.append(FlagDefined(flag_key=KEY, group="ai"))
    builder.append(OrgOverrideSet(flag_key=KEY, org_id="acme", enabled=True))
    builder.append(OrgOverrideSet(flag_key=KEY, org_id="acme", enabled=False))
    return builder


def test_round_trip_through_bytes_is_identity(log: LogBuilder) -> None:
    for envelope in log.events:
        assert decode(envelope.to_json()) == envelope


def test_hash_chain_links_each_stream_from_genesis(log: LogBuilder) -> None:
    first, second = log.events[1], log.events[2]
    assert first.prev_hash == GENESIS_HASH and first.version == 1
    assert second.prev_hash == first.hash and second.version == 2
    assert second.previous == {"enabled": True, "rollout_percentage": None}
    assert second.new == {"enabled": False, "rollout_percentage": None}


@pytest.mark.parametrize(
    "tamper",
    [
        lambda f: f.update(reason="nothing to see"),
        lambda f: f["data"].update(enabled=True),
        lambda f: f["actor"].update(name="mallory"),
        lambda f: f.update(version=7),
    ],
    ids=["reason", "data", "actor", "version"],
)
def test_any_edit_breaks_the_seal(log: LogBuilder, tamper) -> None:
    fields = json.loads(log.events[2].to_json())
    tamper(fields)
    with pytest.raises(DecodeError, match="hash"):
        decode(canonical_json(fields))


def test_upcasts_flag_defined_v1() -> None:
    fields = {
        "event_id": "0b7e6f1c-3a55-4a0e-9a53-2f1b1f6f0c11",
        "type": "FlagDefined",
        "schema_version": 1,
        "stream": "flag/ai.insights.enabled",
        "version": 1,
        "sequence": 1,
        "occurred_at": "2025-11-20T10:00:00Z",
        "org_id": None,
        "flag_key": KEY,
        "actor": {"id": "u1", "name": "ops"},
        "reason": "seed",
        "previous": None,
        "new": {"description": "AI insights"},
        "data": {"type": "FlagDefined", "flag_key": KEY, "description": "AI insights"},
        "prev_hash": GENESIS_HASH,
    }
    fields["hash"] = hash_of(fields)
    envelope = decode(canonical_json(fields))
    assert envelope.schema_version == 1
    assert envelope.data == FlagDefined(flag_key=KEY, description="AI insights", group="ai")


def test_newer_schema_than_known_is_refused() -> None:
    fields = json.loads(LogBuilder().extend([FlagDefined(flag_key=KEY, group="ai")])[0].to_json())
    fields["schema_version"] = 99
    fields["hash"] = hash_of(fields)
    with pytest.raises(DecodeError, match="newer"):
        decode(canonical_json(fields))


@pytest.mark.parametrize("raw", [b"", b"not json", b"[1,2]", b'{"hash": "x"}'])
def test_garbage_is_a_decode_error(raw: bytes) -> None:
    with pytest.raises(DecodeError):
        decode(raw)


def test_cloudevents_binary_mode_is_readable_by_the_cloudevents_sdk(log: LogBuilder) -> None:
    envelope = log.events[1]
    record = to_record(envelope)
    assert record.key == b"acme"
    message = ce_kafka.KafkaMessage(headers=dict(record.headers), key=record.key, value=record.value)
    event = ce_kafka.from_binary_event(message)
    assert event.get_id() == str(envelope.event_id)
    assert event.get_type() == "io.flagstream.OrgOverrideSet.v1"
    assert event.get_subject() == envelope.stream
    assert event.get_data()["hash"] == envelope.hash


def test_system_changes_are_keyed_under_the_system_key() -> None:
    envelope = LogBuilder().extend(
        [FlagDefined(flag_key=KEY, group="ai"), SystemDefaultSet(flag_key=KEY, enabled=True)]
    )[1]
    assert to_record(envelope).key == b"_system"


def test_record_with_mismatched_headers_is_refused(log: LogBuilder) -> None:
    record = to_record(log.events[1])
    headers = [(k, b"someone-else" if k == "ce_id" else v) for k, v in record.headers]
    with pytest.raises(DecodeError, match="ce_id"):
        from_record(record.value, headers)
    missing = [(k, v) for k, v in record.headers if k != "ce_id"]
    with pytest.raises(DecodeError, match="ce_id"):
        from_record(record.value, missing)


@pytest.mark.parametrize(
    "build",
    [
        lambda: OrgOverrideSet(flag_key="Bad Key", org_id="acme", enabled=True),
        lambda: OrgOverrideSet(flag_key=KEY, org_id="acme/../x", enabled=True),
        lambda: PlatformOverrideSet(flag_key=KEY, org_id="acme", platform="myspace", enabled=True),
        lambda: RolloutPercentageSet(flag_key=KEY, level=Level.ORG, org_id="acme", percentage=101),
        lambda: RolloutPercentageSet(flag_key=KEY, level=Level.USER, org_id="acme", percentage=5),
        lambda: RolloutPercentageSet(flag_key=KEY, level=Level.SYSTEM, org_id="acme", percentage=5),
    ],
    ids=["key", "org", "platform", "pct", "user-missing", "system-with-org"],
)
def test_invalid_changes_cannot_be_built(build) -> None:
    with pytest.raises(ValidationError):
        build()


def test_scope_streams_are_distinct_per_level() -> None:
    streams = {
        Scope.system().stream(KEY),
        Scope.org("acme").stream(KEY),
        Scope.for_platform("acme", "meta").stream(KEY),
        Scope.user("acme", "u1").stream(KEY),
    }
    assert len(streams) == 4


def test_a_lone_surrogate_is_a_decode_error_not_a_crash() -> None:
    """JSON may escape a lone surrogate; it is not Unicode, so the event goes to the dead letters."""
    with pytest.raises(DecodeError, match="not valid Unicode"):
        decode(b'{"a": "\\ud800", "hash": "x", "data": {}}')


def test_the_packages_lazy_names_are_its_public_surface_and_resolve() -> None:
    import ast
    import importlib
    from pathlib import Path

    import events

    source = Path(events.__file__).read_text()
    checked = {
        alias.name
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("events.")
        for alias in node.names
    }
    assert set(events.__all__) == set(events._HOME) == checked  # the three lists agree
    for name in events.__all__:
        assert getattr(events, name) is getattr(importlib.import_module(events._HOME[name]), name)
