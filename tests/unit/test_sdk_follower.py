"""The follower's fold of consumed records: other orgs dropped, duplicates skipped, bad records refused."""

from __future__ import annotations

import time
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, generate_latest

from events import Envelope, FlagDefined, OrgOverrideSet, to_record
from flagcore import FlagState
from flagsdk import FlagClient
from flagsdk.follower import Follower
from tests.support.factories import LogBuilder

KEY = "ai.insights.enabled"


@dataclass
class Consumed:
    """The fields of aiokafka's ConsumerRecord that the follower reads."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]


def consumed(envelopes: list[Envelope], start: int = 0) -> list[Consumed]:
    return [
        Consumed("t", 0, start + i, (r := to_record(e)).key, r.value, r.headers) for i, e in enumerate(envelopes)
    ]


def follower(state: FlagState) -> Follower:
    def apply(batch: list[Envelope]) -> tuple[int, int]:
        return sum(state.apply(e) for e in batch), 0

    return Follower(kafka={}, topic="t", org_id="acme", positions={}, apply=apply)


def test_only_the_org_and_the_catalogue_are_folded_and_positions_advance() -> None:
    log = LogBuilder()
    events = log.extend([
        FlagDefined(flag_key=KEY, group="ai"),
        OrgOverrideSet(flag_key=KEY, org_id="globex", enabled=True),
        OrgOverrideSet(flag_key=KEY, org_id="acme", enabled=True),
    ])
    state = FlagState()
    f = follower(state)
    f._fold(0, consumed(events))
    assert set(state.tenants) == {"acme"} and KEY in state.catalog.definitions
    assert (f.stats.applied, f.stats.dropped, f.stats.duplicates) == (2, 1, 0)
    assert f.positions == {0: 3}
    assert f.stats.last_event_at == events[-1].occurred_at


def test_a_republished_event_is_skipped_and_a_broken_record_refused() -> None:
    log = LogBuilder()
    events = log.extend([FlagDefined(flag_key=KEY, group="ai"), OrgOverrideSet(flag_key=KEY, org_id="acme",
                                                                               enabled=True)])
    state = FlagState()
    f = follower(state)
    f._fold(0, consumed(events))
    again = consumed(events[1:], start=2)  # an at-least-once relay published it twice
    broken = Consumed("t", 0, 3, b"acme", b'{"not": "an event"}', [])
    f._fold(0, [*again, broken])
    assert (f.stats.applied, f.stats.duplicates, f.stats.refused) == (2, 1, 1)
    assert f.positions == {0: 4}


def test_a_client_not_yet_started_answers_off_rather_than_raising() -> None:
    client = FlagClient(query_url="http://127.0.0.1:9", api_key="k", org_id="acme", kafka={})
    assert client.is_enabled(KEY) is False
    assert client.evaluate(KEY).error_code is not None
    assert not client.status().connected


def test_a_client_that_never_reached_the_topic_grows_stale_and_exports_it_on_the_registry_given() -> None:
    registry = CollectorRegistry()
    client = FlagClient(query_url="http://127.0.0.1:9", api_key="k", org_id="acme", kafka={}, metrics_registry=registry)
    first = client.staleness()
    time.sleep(0.02)
    later = client.staleness()
    assert first.records is None and later.seconds > first.seconds >= 0
    page = generate_latest(registry).decode()
    assert 'flagstream_sdk_staleness_seconds{org="acme"}' in page
    assert "flagstream_sdk_lag_records{" not in page  # unknown: no sample rather than a made-up 0
    client.close()
    assert "flagstream_sdk" not in generate_latest(registry).decode()  # unregistered with the client
