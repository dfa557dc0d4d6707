"""`tests.support.eventlog`: events chain per stream, decode from their records, and random logs are reproducible."""

from __future__ import annotations

from events import GENESIS_HASH, from_record
from flagcore import fold
from tests.support.eventlog import EventLog, random_log


def test_events_chain_per_stream_and_decode_from_their_records() -> None:
    log = EventLog()
    log.define("a.b")
    first = log.org("org-1", "a.b", True)
    second = log.org("org-1", "a.b", False)
    assert (first.version, second.version) == (1, 2)
    assert first.prev_hash == GENESIS_HASH and second.prev_hash == first.hash
    assert second.previous == {"enabled": True, "rollout_percentage": None}
    for envelope, record in zip(log.events, log.records(), strict=True):
        assert from_record(record.value, record.headers) == envelope
        assert record.key == envelope.partition_key.encode()


def test_random_log_folds_without_errors_and_is_reproducible() -> None:
    a = random_log(400, orgs=["o1", "o2"], seed=3)
    b = random_log(400, orgs=["o1", "o2"], seed=3)
    assert [e.data for e in a.events] == [e.data for e in b.events]
    state = fold(a.events)
    assert len(state.catalog.definitions) == 8
    assert set(state.tenants) <= {"o1", "o2"}
    assert len(a.events) == 400
