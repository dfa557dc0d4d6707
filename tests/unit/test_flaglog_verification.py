"""The log verifier on a clean log and on each way a log can be corrupted."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from events import (
    Actor,
    Change,
    ForeignRecordAcknowledged,
    OrgOverrideSet,
    PlatformOverrideSet,
    RolloutPercentageSet,
    hash_of,
    to_record,
)
from events.changes import FlagDefined
from events.vocabulary import Level
from flagcore import StreamHead
from flaglog.verification import LogRecord, LogVerifier, ProblemKind, Report, Severity, verify
from services.command.chain import EMPTY_HEAD, seal_changes

FLAG = "ads.export"
ORG_STREAM = f"org/acme/flag/{FLAG}"
ACTOR = Actor(id="key:0123456789abcdef", name="tester")


def _log() -> list[LogRecord]:
    """A definition on partition 1, and two of acme's streams interleaved on partition 0."""
    heads: dict[str, StreamHead] = {}
    changes: list[Change] = [
        FlagDefined(flag_key=FLAG, group="ads"),
        OrgOverrideSet(flag_key=FLAG, org_id="acme", enabled=True),
        PlatformOverrideSet(flag_key=FLAG, org_id="acme", platform="meta", enabled=True),
        OrgOverrideSet(flag_key=FLAG, org_id="acme", enabled=False),
        RolloutPercentageSet(flag_key=FLAG, level=Level.ORG, org_id="acme", percentage=30),
        PlatformOverrideSet(flag_key=FLAG, org_id="acme", platform="meta", enabled=False),
        OrgOverrideSet(flag_key=FLAG, org_id="acme", enabled=True),
    ]
    offsets = {0: 0, 1: 0}
    records = []
    for sequence, change in enumerate(changes, 1):
        [envelope] = seal_changes(
            [change], heads.get(change.stream, EMPTY_HEAD), sequences=[sequence], actor=ACTOR,
            reason="test", occurred_at=datetime(2026, 1, 1, tzinfo=UTC),
        )
        heads[change.stream] = StreamHead(envelope.version, envelope.hash, envelope.new)
        record = to_record(envelope)
        partition = 1 if change.tenant is None else 0
        records.append(LogRecord(partition, offsets[partition], record.key, record.value, tuple(record.headers)))
        offsets[partition] += 1
    return records


def _at(records: list[LogRecord], stream: str, version: int) -> int:
    """Index of a stream's version in the list."""
    return next(
        i for i, r in enumerate(records)
        if (f := json.loads(r.value or b"{}")).get("stream") == stream and f.get("version") == version
    )


def _edit(record: LogRecord, change: Callable[[dict], None], *, reseal: bool) -> LogRecord:
    fields = json.loads(record.value or b"")
    change(fields)
    if reseal:
        fields["hash"] = hash_of(fields)
    return replace(record, value=json.dumps(fields).encode())


def _renumbered(records: list[LogRecord]) -> list[LogRecord]:
    """Offsets as a copied topic would give them: consecutive per partition."""
    next_offset: dict[int, int] = {}
    out = []
    for r in records:
        out.append(replace(r, offset=next_offset.get(r.partition, 0)))
        next_offset[r.partition] = next_offset.get(r.partition, 0) + 1
    return out


def _only(report: Report, stream: str | None = ORG_STREAM) -> tuple[ProblemKind, int | None]:
    assert not report.ok
    [finding] = report.broken
    assert finding.stream == stream
    return finding.first.kind, finding.first.version


def test_a_clean_log_verifies_with_counts() -> None:
    report = verify(_log())
    assert report.ok and report.findings == ()
    assert (report.records, report.events, report.streams, report.partitions) == (7, 7, 3, 2)


def test_partitions_may_come_one_after_the_other() -> None:
    records = _log()
    assert verify(sorted(records, key=lambda r: (r.partition, r.offset))).ok


def test_an_altered_value_is_caught_at_that_event_and_only_there() -> None:
    records = _log()
    i = _at(records, ORG_STREAM, 2)
    records[i] = _edit(records[i], lambda f: f["new"].update(enabled=True), reseal=False)
    report = verify(records)
    assert _only(report) == (ProblemKind.ALTERED, 2)
    assert report.broken[0].failures == 1  # v3 still links to v2's sealed hash: one problem, not two


def test_a_forged_event_resealed_breaks_the_link_from_its_successor() -> None:
    records = _log()
    i = _at(records, ORG_STREAM, 2)
    records[i] = _edit(records[i], lambda f: f.update(reason="nothing to see"), reseal=True)
    kind, version = _only(verify(records))
    assert (kind, version) == (ProblemKind.CHAIN_BROKEN, 3)


def test_a_removed_event_is_caught_where_the_gap_shows() -> None:
    records = _log()
    del records[_at(records, ORG_STREAM, 2)]
    report = verify(_renumbered(records))
    assert _only(report) == (ProblemKind.REMOVED, 3)
    assert "v2 missing" in report.broken[0].first.detail


def test_removing_the_first_event_of_a_stream_is_caught() -> None:
    records = _log()
    del records[_at(records, ORG_STREAM, 1)]
    report = verify(_renumbered(records))
    assert _only(report) == (ProblemKind.REMOVED, 2)
    assert "starts at v2" in report.broken[0].first.detail


def test_a_duplicate_fails_unless_tolerated() -> None:
    records = _log()
    copy = records[_at(records, ORG_STREAM, 2)]
    records.insert(_at(records, ORG_STREAM, 3), copy)
    records = _renumbered(records)
    assert _only(verify(records)) == (ProblemKind.DUPLICATE, 2)
    tolerant = verify(records, tolerate_duplicates=True)
    assert tolerant.ok and tolerant.warnings == 1 and tolerant.events == 7 and tolerant.records == 8
    assert tolerant.findings[0].first.severity is Severity.WARNING


def test_a_reordered_pair_is_caught_at_the_first_event_out_of_place() -> None:
    records = _log()
    i, j = _at(records, ORG_STREAM, 2), _at(records, ORG_STREAM, 3)
    records[i], records[j] = records[j], records[i]
    report = verify(_renumbered(records))
    assert _only(report) == (ProblemKind.REORDERED, 3)
    assert report.broken[0].failures == 1


def test_a_different_event_at_a_taken_version_is_a_conflict() -> None:
    records = _log()
    original = records[_at(records, ORG_STREAM, 2)]
    forged = _edit(original, lambda f: f.update(reason="a second story"), reseal=True)
    records.append(replace(forged, offset=99))
    report = verify(records)
    assert _only(report) == (ProblemKind.CONFLICT, 2)
    assert report.broken[0].first.offset == 99


def test_a_record_under_the_wrong_key_is_caught() -> None:
    records = _log()
    i = _at(records, ORG_STREAM, 1)
    records[i] = replace(records[i], key=b"globex")
    assert _only(verify(records)) == (ProblemKind.WRONG_KEY, 1)


def test_a_stream_split_across_partitions_is_caught() -> None:
    records = _log()
    i = _at(records, ORG_STREAM, 3)
    records[i] = replace(records[i], partition=2, offset=0)
    assert _only(verify(records)) == (ProblemKind.SPLIT, 3)


def test_headers_that_disagree_with_the_event_are_caught() -> None:
    records = _log()
    i = _at(records, ORG_STREAM, 1)
    headers = tuple((n, b"io.flagstream.Other.v1" if n == "ce_type" else v) for n, v in records[i].headers)
    records[i] = replace(records[i], headers=headers)
    assert _only(verify(records)) == (ProblemKind.BAD_HEADERS, 1)


@pytest.mark.parametrize("value", [None, b"not json", b"[1, 2]"])
def test_an_event_whose_value_was_replaced_names_no_stream_and_is_altered(value: bytes | None) -> None:
    records = _log()
    records.append(LogRecord(0, 99, b"acme", value, records[0].headers))  # the event's own headers kept
    report = verify(records)
    assert not report.ok and report.findings == ()
    [problem] = report.unattributed
    assert (problem.kind, problem.offset) == (ProblemKind.ALTERED, 99)


@pytest.mark.parametrize(
    "value",
    [None, b"not json", b"[1, 2]", b'{"order": 17, "status": "paid"}', b'{"blob": "' + b"x" * 900_000 + b'"}'],
    ids=["empty", "not-json", "array", "wrong-schema", "900KB"],
)
def test_a_record_that_was_never_an_event_is_foreign_not_altered(value: bytes | None) -> None:
    records = _log()
    records.append(LogRecord(1, 7, b"whatever", value, (("content-type", b"application/json"),)))
    report = verify(records)
    assert not report.ok and report.findings == ()  # someone wrote to the log of record: it fails, unattributed
    [problem] = report.unattributed
    assert (problem.kind, problem.partition, problem.offset) == (ProblemKind.FOREIGN, 1, 7)
    assert "not an event of this log" in problem.detail and f"{len(value or b''):,} bytes" in problem.detail


def test_a_sealed_event_the_projector_would_refuse_is_invalid() -> None:
    records = _log()
    i = _at(records, ORG_STREAM, 1)
    records[i] = _edit(records[i], lambda f: f.update(type="OrgOverrideExploded"), reseal=True)
    kind, _ = _only(verify(records))
    assert kind is ProblemKind.INVALID


def test_the_report_serialises() -> None:
    records = _log()
    del records[_at(records, ORG_STREAM, 2)]
    document = verify(_renumbered(records)).to_dict()
    assert json.loads(json.dumps(document))["findings"][0]["first"]["kind"] == "removed"


def _store(records: list[LogRecord]) -> list[tuple[str, int, str]]:
    """What the command store holds for this log: (stream, version, hash) of every event."""
    return [(f["stream"], f["version"], f["hash"]) for f in (json.loads(r.value or b"") for r in records)]


def _checked(records: list[LogRecord], store: list[tuple[str, int, str]]) -> Report:
    verifier = LogVerifier()
    for record in records:
        verifier.add(record)
    verifier.check_store(store)
    return verifier.report()


def test_the_store_agrees_with_a_clean_log() -> None:
    records = _log()
    assert _checked(records, _store(records)).ok


def test_removing_the_last_event_of_a_stream_needs_the_store_to_show() -> None:
    records = _log()
    store = _store(records)
    del records[_at(records, ORG_STREAM, 4)]
    assert verify(records).ok  # the chain alone cannot tell: v3 is a consistent head
    report = _checked(records, store)
    assert _only(report) == (ProblemKind.REMOVED, 4)
    assert report.broken[0].first.partition is None


def test_resealing_the_last_event_of_a_stream_needs_the_store_to_show() -> None:
    records = _log()
    store = _store(records)
    i = _at(records, ORG_STREAM, 4)
    records[i] = _edit(records[i], lambda f: f["new"].update(enabled=False), reseal=True)
    assert verify(records).ok
    report = _checked(records, store)
    assert _only(report) == (ProblemKind.DIFFERS_FROM_STORE, 4)
    assert report.broken[0].first.offset == records[i].offset


def test_a_stream_missing_from_the_topic_altogether_is_reported() -> None:
    records = _log()
    store = _store(records)
    platform = "org/acme/platform/meta/flag/ads.export"
    kept = [r for r in records if json.loads(r.value or b"")["stream"] != platform]
    assert _only(_checked(kept, store), platform) == (ProblemKind.REMOVED, 1)


@pytest.mark.parametrize(
    ("order", "kind", "version"),
    [
        ((2, 1, 3, 4, 5), ProblemKind.REORDERED, 2),  # the stream's first event came second
        ((1, 3, 4, 2, 5), ProblemKind.REORDERED, 3),  # one event two places late
        ((1, 2, 3, 5, 4), ProblemKind.REORDERED, 5),
        ((1, 4, 5), ProblemKind.REMOVED, 4),  # two in a row gone
    ],
)
def test_any_order_of_a_stream_but_its_own_is_caught(order: tuple[int, ...], kind: ProblemKind, version: int) -> None:
    events = _five_versions()
    report = verify(_renumbered([events[v - 1] for v in order]))
    assert _only(report) == (kind, version)
    assert report.broken[0].failures == 1  # one displacement, one problem: the links all check out once placed


def _five_versions() -> list[LogRecord]:
    """Five consecutive events of one stream on partition 0."""
    head = EMPTY_HEAD
    out = []
    for n in range(5):
        change = RolloutPercentageSet(flag_key=FLAG, level=Level.ORG, org_id="acme", percentage=10 * (n + 1))
        [envelope] = seal_changes([change], head, sequences=[100 + n], actor=ACTOR, reason="test",
                                  occurred_at=datetime(2026, 1, 1, tzinfo=UTC))
        head = StreamHead(envelope.version, envelope.hash, envelope.new)
        record = to_record(envelope)
        out.append(LogRecord(0, 0, record.key, record.value, tuple(record.headers)))
    return out


_STREAMS = [("acme", None), ("acme", "meta"), ("globex", None)]


def _random_log(picks: list[int]) -> list[LogRecord]:
    """A log of rollout changes, one per pick, across three streams on two partitions (in offset order)."""
    heads: dict[str, StreamHead] = {}
    offsets = {0: 0, 1: 0}
    out = []
    for n, pick in enumerate(picks):
        org, platform = _STREAMS[pick]
        change: Change = (
            RolloutPercentageSet(flag_key=FLAG, level=Level.PLATFORM, org_id=org, platform=platform, percentage=n % 101)
            if platform else RolloutPercentageSet(flag_key=FLAG, level=Level.ORG, org_id=org, percentage=n % 101)
        )
        [envelope] = seal_changes([change], heads.get(change.stream, EMPTY_HEAD), sequences=[n + 1], actor=ACTOR,
                                  reason="test", occurred_at=datetime(2026, 1, 1, tzinfo=UTC))
        heads[change.stream] = StreamHead(envelope.version, envelope.hash, envelope.new)
        record = to_record(envelope)
        partition = 0 if org == "acme" else 1
        out.append(LogRecord(partition, offsets[partition], record.key, record.value, tuple(record.headers)))
        offsets[partition] += 1
    return out


def _has_successor(records: list[LogRecord], i: int) -> bool:
    f = json.loads(records[i].value or b"")
    return any(json.loads(r.value or b"")["stream"] == f["stream"] for r in records[i + 1:])


@settings(max_examples=150, deadline=None)
@given(picks=st.lists(st.integers(0, 2), min_size=2, max_size=30), data=st.data())
def test_property_every_corruption_of_a_random_log_is_caught(picks: list[int], data: st.DataObject) -> None:
    records = _random_log(picks)
    assert verify(records).ok
    i = data.draw(st.integers(0, len(records) - 1))
    kind = data.draw(st.sampled_from(["alter", "drop", "duplicate", "swap"]))
    corrupted = list(records)
    if kind == "alter":
        corrupted[i] = _edit(records[i], lambda f: f.update(reason="changed"), reseal=False)
    elif kind == "drop":
        assume(_has_successor(records, i))  # a stream's last event: only the store can tell (check_store)
        del corrupted[i]
    elif kind == "duplicate":
        corrupted.insert(i + 1, records[i])
    else:
        stream = json.loads(records[i].value or b"")["stream"]
        later = [j for j in range(i + 1, len(records)) if json.loads(records[j].value or b"")["stream"] == stream]
        assume(later)
        j = later[0]
        corrupted[i], corrupted[j] = records[j], records[i]
    report = verify(_renumbered(corrupted))
    assert not report.ok and len(report.broken) == 1


def _acknowledging(records: list[LogRecord], partition: int, offset: int, sha256: str) -> list[LogRecord]:
    """The log with a system admin's ForeignRecordAcknowledged appended on the system partition."""
    change = ForeignRecordAcknowledged(partition=partition, offset=offset, sha256=sha256)
    [envelope] = seal_changes(
        [change], EMPTY_HEAD, sequences=[100], actor=ACTOR, reason="a load test message, known",
        occurred_at=datetime(2026, 1, 2, tzinfo=UTC),
    )
    record = to_record(envelope)
    return [*records, LogRecord(1, 50, record.key, record.value, tuple(record.headers))]


STRAY = b'{"order": 17, "status": "paid"}'


def test_an_acknowledged_foreign_record_is_a_warning_naming_who_acknowledged_it_and_why() -> None:
    records = [*_log(), LogRecord(1, 7, b"whatever", STRAY, ())]
    failing = verify(records)
    assert not failing.ok and hashlib.sha256(STRAY).hexdigest() in failing.unattributed[0].detail
    report = verify(_acknowledging(records, 1, 7, hashlib.sha256(STRAY).hexdigest()))
    assert report.ok and report.warnings == 1
    [problem] = report.unattributed
    assert problem.severity is Severity.WARNING and problem.kind is ProblemKind.FOREIGN
    assert "acknowledged by key:0123456789abcdef ('a load test message, known'" in problem.detail


@pytest.mark.parametrize(("offset", "sha256"), [(7, "0" * 64), (8, hashlib.sha256(STRAY).hexdigest())])
def test_an_acknowledgement_covers_one_record_only_its_place_and_its_hash(offset: int, sha256: str) -> None:
    records = [*_log(), LogRecord(1, 7, b"whatever", STRAY, ())]
    report = verify(_acknowledging(records, 1, offset, sha256))
    assert not report.ok and report.failures == 1  # the stray record still fails the log
    stray, ack = report.unattributed
    assert stray.severity is Severity.FAILURE and ack.severity is Severity.WARNING
    assert "but the log holds" in ack.detail
