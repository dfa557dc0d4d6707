"""Proving the log: walk every record of the topic and check each stream's hash chain.

Pure, no Kafka: `verify(records)` takes the records of the topic (each partition
in offset order; partitions may come one after the other or interleaved) and
returns a `Report`. Reading the topic is `flagctl`'s job (`flagctl.logreader`).

Every event carries `hash`, the SHA-256 of its canonical JSON without `hash`, and
`prev_hash`, the hash of the event before it in its stream (`GENESIS_HASH` for
version 1). The verifier keeps, per stream, the head (highest version placed, its
hash) and the hash and position of every version it has placed, and checks each
record in this order:

0. **foreign** — the record carries no mark of this product's events: neither its
   CloudEvents source header (`ce_source: /flagstream/command`) nor a `hash` field
   in a JSON object value (wrong-schema JSON, a stray message, a test payload). It
   was never an event, so it is not reported as altered; it still fails the log
   (someone wrote to the log of record), and is attributed to no stream.
1. **altered** — the value is not a JSON object, or its `hash` is not the hash of
   its contents: it was changed after it was sealed. It is attributed to the stream
   its raw JSON names, when it names one. Its claimed `hash` is taken as the link
   its successor points to, so an alteration that kept the old hash is one problem,
   not two. No other check applies to it.
2. **invalid** — sealed correctly but not a valid event (unknown type, a schema
   newer than this code, fields that disagree): the projector would dead-letter it.
   The chain checks below still run on its raw fields when they are well-formed.
3. **wrong_key** — the Kafka key is not the event's partition key (its org, or
   `_system`): the org's events would lose their order.
4. **split** — the stream already had events on another partition: order across
   partitions is undefined, so the stream's order is no longer proven.
5. **bad_headers** — the CloudEvents headers do not describe the event (what
   `events.from_record` checks; the projector would dead-letter it).
6. **duplicate** — the same event again: same `(stream, version)` and the same
   hash. A relay that crashes between Kafka's acknowledgement and stamping the row
   re-publishes it, which consumers de-duplicate on `(stream, version)`; but a copy
   nobody expected is also how an injected replay looks, so it fails the log unless
   the caller tolerates duplicates (then it is a *warning*).
   **conflict** — a *different* event whose event id, or whose `(stream, version)`,
   was already taken: a substituted or forged copy.
7. Then, by version `v` against the stream's head `h`:
   - `v == h + 1`: **chain_broken** when `prev_hash` is not the head's hash (the
     genesis hash for v1). One of the two was substituted, or the predecessor was
     altered and re-sealed with a fresh, self-consistent hash — the chain cannot
     say which, so the problem is reported at the record whose `prev_hash` does
     not match, and names the predecessor's offset.
   - `v > h + 1`: **removed** — versions `h+1 .. v-1` are missing (from the start
     of the stream when `h == 0`). If a missing version turns up later, the gap
     becomes **reordered** (reported where the gap showed: the first record out of
     place), and the late events' links are checked both ways once their
     neighbours are known. Versions of such a gap that never turn up are reported
     as **removed** at the end.
   - `v < h` and not seen before: a late event — it fills a gap, as above.

Every problem is a failure (a tolerated `duplicate` is a warning). Per stream, the report gives the
first failure (or, for a stream with none, its first warning) with its partition,
offset, event id and version, and the counts; `ok` is true when there is no
failure anywhere.

What the chain cannot prove, by construction: the *last* event of a stream has no
successor, so removing it, or altering and re-sealing it, leaves a consistent
chain; and the hash is not a signature, so whoever can write to the topic can
append a well-formed event to the head of a stream. `check_store` covers the
first two: given the (stream, version, hash) of every event the command store
has *published*, it reports a topic event whose hash differs from the store's
(**differs_from_store**) and a published version missing past the stream's
head on the topic (**removed**). An appended forgery stays out of reach: the
store may have committed that version since it was read.

Memory: about 300 bytes per event (the hash and position of every version, and
every event id), so a million-event log needs about 300 MB.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from enum import StrEnum
from itertools import islice
from typing import Any
from uuid import UUID

from events import GENESIS_HASH, SYSTEM_PARTITION_KEY, DecodeError, Envelope, ForeignRecordAcknowledged, hash_of
from events.cloudevents import SOURCE, check_headers
from events.codec import decode_fields

__all__ = [
    "LogRecord",
    "LogVerifier",
    "Problem",
    "ProblemKind",
    "Report",
    "Severity",
    "StreamFindings",
    "verify",
]

_HASH = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True, slots=True)
class LogRecord:
    """One Kafka record as read: where it is, and its key, value and headers as bytes."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()


class Severity(StrEnum):
    FAILURE = "failure"
    WARNING = "warning"


class ProblemKind(StrEnum):
    """What is wrong with a record (the module docstring gives the rules)."""

    FOREIGN = "foreign"
    ALTERED = "altered"
    INVALID = "invalid"
    WRONG_KEY = "wrong_key"
    SPLIT = "split"
    BAD_HEADERS = "bad_headers"
    DUPLICATE = "duplicate"
    CONFLICT = "conflict"
    CHAIN_BROKEN = "chain_broken"
    REMOVED = "removed"
    REORDERED = "reordered"
    DIFFERS_FROM_STORE = "differs_from_store"



@dataclass(frozen=True, slots=True)
class Problem:
    """One finding, at the record where it shows."""

    kind: ProblemKind
    stream: str | None
    partition: int | None  # None: a problem with no record on the topic (a published event that is not there)
    offset: int | None
    event_id: str | None
    version: int | None
    detail: str
    severity: Severity = Severity.FAILURE

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind.value,
            "severity": self.severity.value,
            "stream": self.stream,
            "partition": self.partition,
            "offset": self.offset,
            "event_id": self.event_id,
            "version": self.version,
            "detail": self.detail,
        }


@dataclass(frozen=True, slots=True)
class StreamFindings:
    """A stream with at least one problem: the first failure (else first warning), and the counts."""

    stream: str
    first: Problem
    failures: int
    warnings: int

    @property
    def problems(self) -> int:
        return self.failures + self.warnings

    def to_dict(self) -> dict[str, Any]:
        return {
            "stream": self.stream,
            "failures": self.failures,
            "warnings": self.warnings,
            "first": self.first.to_dict(),
        }


@dataclass(frozen=True, slots=True)
class Report:
    """The verdict on a whole log."""

    records: int  # records read
    events: int  # records that are not identical re-publications
    streams: int
    partitions: int  # partitions that held at least one record
    findings: tuple[StreamFindings, ...]  # streams with problems: failing ones first, each by first offset
    unattributed: tuple[Problem, ...]  # records too damaged to name their stream

    @property
    def failures(self) -> int:
        return sum(f.failures for f in self.findings) + sum(p.severity is Severity.FAILURE for p in self.unattributed)

    @property
    def warnings(self) -> int:
        return sum(f.warnings for f in self.findings) + sum(p.severity is Severity.WARNING for p in self.unattributed)

    @property
    def ok(self) -> bool:
        return self.failures == 0

    @property
    def broken(self) -> tuple[StreamFindings, ...]:
        """Streams with at least one failure."""
        return tuple(f for f in self.findings if f.failures)

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "records": self.records,
            "events": self.events,
            "streams": self.streams,
            "partitions": self.partitions,
            "failures": self.failures,
            "warnings": self.warnings,
            "broken_streams": len(self.broken),
            "findings": [f.to_dict() for f in self.findings],
            "unattributed": [p.to_dict() for p in self.unattributed],
        }


def verify(records: Iterable[LogRecord], *, tolerate_duplicates: bool = False) -> Report:
    """Check every record (each partition in offset order)."""
    verifier = LogVerifier(tolerate_duplicates=tolerate_duplicates)
    for record in records:
        verifier.add(record)
    return verifier.report()


# --- internals -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Link:
    """The fields the chain is made of, read from the raw JSON."""

    stream: str
    version: int
    event_id: str
    uid: bytes
    hash: str
    prev_hash: str
    partition_key: str

    @classmethod
    def read(cls, fields: dict[str, Any]) -> _Link | None:
        stream, version, event_id = fields.get("stream"), fields.get("version"), fields.get("event_id")
        hash_, prev_hash, org_id = fields.get("hash"), fields.get("prev_hash"), fields.get("org_id")
        if not (isinstance(stream, str) and stream and type(version) is int and version >= 1):
            return None
        if not (isinstance(hash_, str) and _HASH.fullmatch(hash_)):
            return None
        if not (isinstance(prev_hash, str) and _HASH.fullmatch(prev_hash) and isinstance(event_id, str)):
            return None
        try:
            uid = UUID(event_id).bytes
        except ValueError:
            return None
        key = org_id if isinstance(org_id, str) else SYSTEM_PARTITION_KEY
        return cls(stream, version, event_id, uid, hash_, prev_hash, key)


# A placed version: (hash, partition, offset). The same tuple is shared by the id index.
_Seen = tuple[str, int, int]


@dataclass(slots=True)
class _Gap:
    lo: int  # first missing version
    hi: int  # last missing version
    problem: Problem  # REMOVED until a missing version turns up, then REORDERED
    filled: set[int] = field(default_factory=set)
    # version → (prev_hash, event_id) of the events at lo..hi+1 seen so far, to check their links late
    claims: dict[int, tuple[str, str]] = field(default_factory=dict)

    def holds(self, version: int) -> bool:
        return self.lo <= version <= self.hi


@dataclass(slots=True)
class _Stream:
    partition: int
    other_partitions: set[int] = field(default_factory=set)
    head: int = 0
    head_hash: str = GENESIS_HASH
    seen: dict[int, _Seen] = field(default_factory=dict)
    gaps: list[_Gap] = field(default_factory=list)
    first_failure: Problem | None = None
    first_warning: Problem | None = None
    failures: int = 0
    warnings: int = 0


def _at(partition: int, offset: int) -> str:
    return f"partition {partition} offset {offset}"


def _versions(lo: int, hi: int) -> str:
    return f"v{lo}" if lo == hi else f"v{lo}..v{hi}"


class LogVerifier:
    """Feed records with `add`, in each partition's offset order; then `report()` once."""

    def __init__(self, *, tolerate_duplicates: bool = False) -> None:
        self._partitions: set[int] = set()
        self._tolerate_duplicates = tolerate_duplicates
        self._streams: dict[str, _Stream] = {}
        self._ids: dict[bytes, _Seen] = {}
        self._unattributed: list[Problem] = []
        self._foreign: dict[tuple[int, int], tuple[int, str]] = {}  # where → (index in unattributed, value's sha256)
        self._acknowledged: dict[tuple[int, int], Envelope] = {}  # where → the ForeignRecordAcknowledged event
        self._records = 0
        self._duplicates = 0
        self._done = False

    def add(self, record: LogRecord) -> None:
        if self._done:
            raise RuntimeError("report() was already called")
        self._records += 1
        self._partitions.add(record.partition)
        where = (record.partition, record.offset)
        fields = _fields(record.value)
        foreign = _foreign(record, fields)
        if foreign is not None:
            digest = hashlib.sha256(record.value or b"").hexdigest()
            self._problem(None, ProblemKind.FOREIGN, where, None, None, f"{foreign}; sha256 {digest}")
            self._foreign[where] = (len(self._unattributed) - 1, digest)
            return
        if isinstance(fields, str):
            self._problem(None, ProblemKind.ALTERED, where, None, None, fields)
            return
        link = _Link.read(fields)
        stream = fields.get("stream") if isinstance(fields.get("stream"), str) else None
        event_id = fields.get("event_id") if isinstance(fields.get("event_id"), str) else None
        version = fields.get("version") if type(fields.get("version")) is int else None

        envelope: Envelope | None = None
        try:
            envelope = decode_fields(fields)  # checks the seal first: a sound event is hashed once
        except DecodeError as exc:
            if fields.get("hash") != hash_of(fields):
                detail = "its hash does not match its contents: it was changed after it was sealed"
                self._problem(stream, ProblemKind.ALTERED, where, event_id, version, detail)
                if link is not None:
                    self._place_unchecked(link, where)
                return
            detail = f"sealed, but not a valid event: {exc.reason}"
            self._problem(stream, ProblemKind.INVALID, where, event_id, version, detail)
        if link is None:
            return

        if record.key != link.partition_key.encode():
            shown = record.key.decode(errors="replace") if record.key is not None else None
            detail = f"Kafka key {shown!r}, but the event belongs under {link.partition_key!r}"
            self._problem(link.stream, ProblemKind.WRONG_KEY, where, link.event_id, link.version, detail)
        state = self._streams.get(link.stream)
        if state is None:
            state = self._streams[link.stream] = _Stream(partition=record.partition)
        elif record.partition != state.partition and record.partition not in state.other_partitions:
            state.other_partitions.add(record.partition)
            detail = f"the stream is also on partition {state.partition}: its order across partitions is not proven"
            self._problem(link.stream, ProblemKind.SPLIT, where, link.event_id, link.version, detail)
        if envelope is not None and isinstance(envelope.data, ForeignRecordAcknowledged):
            self._acknowledged[envelope.data.partition, envelope.data.offset] = envelope
        if envelope is not None:
            try:
                check_headers(envelope, record.headers)
            except DecodeError as exc:
                detail = f"CloudEvents headers disagree with the event: {exc.reason}"
                self._problem(link.stream, ProblemKind.BAD_HEADERS, where, link.event_id, link.version, detail)
        self._place(state, link, where)

    def check_store(self, published: Iterable[tuple[str, int, str]]) -> None:
        """Compare with the command store's published events, as (stream, version, hash); before `report()`."""
        if self._done:
            raise RuntimeError("report() was already called")
        for stream, version, hash_ in published:
            state = self._streams.get(stream)
            seen = state.seen.get(version) if state is not None else None
            if seen is not None:
                if seen[0] != hash_:
                    detail = f"v{version} differs from the command store's (hash {hash_[:12]}…): forged or altered"
                    self._problem(stream, ProblemKind.DIFFERS_FROM_STORE, seen[1:], None, version, detail)
            elif state is None or version > state.head:
                detail = f"v{version} is in the command store and was published, but is not on the topic"
                self._problem(stream, ProblemKind.REMOVED, (None, None), None, version, detail)

    def report(self) -> Report:
        if not self._done:
            self._done = True
            for name, state in self._streams.items():
                for gap in state.gaps:
                    self._close(name, gap)
            self._apply_acknowledgements()
        findings = [
            StreamFindings(name, first, s.failures, s.warnings)
            for name, s in self._streams.items()
            if (first := s.first_failure or s.first_warning) is not None
        ]
        findings.sort(key=lambda f: (f.failures == 0, f.first.partition or 0, f.first.offset or 0, f.stream))
        return Report(
            records=self._records,
            events=self._records - self._duplicates,
            streams=len(self._streams),
            partitions=len(self._partitions),
            findings=tuple(findings),
            unattributed=tuple(self._unattributed),
        )

    def _apply_acknowledgements(self) -> None:
        """A foreign record acknowledged (same place, same SHA-256) is a warning naming who did it and why;
        an acknowledgement that names no such record is a warning too (the log was rebuilt, or it is wrong)."""
        for where, ack in self._acknowledged.items():
            ours = self._foreign.get(where)
            data = ack.data
            assert isinstance(data, ForeignRecordAcknowledged)
            who = f"acknowledged by {ack.actor.id} ({ack.reason!r}, event {ack.event_id})"
            if ours is not None and ours[1] == data.sha256:
                index = ours[0]
                problem = self._unattributed[index]
                self._unattributed[index] = replace(
                    problem, severity=Severity.WARNING, detail=f"{who}: {problem.detail}"
                )
                continue
            found = "a record with another SHA-256" if ours is not None else "no foreign record"
            detail = f"{who} names {_at(*where)} with sha256 {data.sha256}, but the log holds {found} there"
            self._unattributed.append(
                Problem(ProblemKind.FOREIGN, None, where[0], where[1], None, None, detail, Severity.WARNING)
            )

    # --- the chain ------------------------------------------------------------------

    def _place(self, state: _Stream, link: _Link, where: tuple[int, int]) -> None:
        seen = state.seen.get(link.version)
        if seen is not None and seen[0] == link.hash:
            self._duplicates += 1
            detail = f"v{link.version} again, identical (first at {_at(*seen[1:])})"
            self._problem(link.stream, ProblemKind.DUPLICATE, where, link.event_id, link.version, detail)
            return
        taken = self._ids.get(link.uid)
        if taken is not None:
            detail = f"a different event already has this event id (at {_at(*taken[1:])})"
            self._problem(link.stream, ProblemKind.CONFLICT, where, link.event_id, link.version, detail)
            return
        if seen is not None:
            detail = f"a different event already holds v{link.version} (at {_at(*seen[1:])})"
            self._problem(link.stream, ProblemKind.CONFLICT, where, link.event_id, link.version, detail)
            return
        self._register(state, link, where)
        if link.version == state.head + 1:
            self._check_prev(state, link, where)
            state.head, state.head_hash = link.version, link.hash
        elif link.version > state.head + 1:
            lo, hi = state.head + 1, link.version - 1
            if state.head:
                after = state.seen[state.head]
                detail = f"{_versions(lo, hi)} missing: v{link.version} follows v{state.head} (at {_at(*after[1:])})"
            else:
                detail = f"{_versions(lo, hi)} missing: the stream starts at v{link.version}"
            problem = self._problem(link.stream, ProblemKind.REMOVED, where, link.event_id, link.version, detail)
            state.gaps.append(_Gap(lo, hi, problem, claims={link.version: (link.prev_hash, link.event_id)}))
            state.head, state.head_hash = link.version, link.hash
        else:
            self._fill(state, link, where)

    def _place_unchecked(self, link: _Link, where: tuple[int, int]) -> None:
        """An altered record: keep its claimed hash as the link its successor points to, check nothing."""
        state = self._streams.get(link.stream)
        if state is None:
            state = self._streams[link.stream] = _Stream(partition=where[0])
        if link.version in state.seen or link.uid in self._ids:
            return
        self._register(state, link, where)
        if link.version > state.head:
            if link.version > state.head + 1:
                detail = f"{_versions(state.head + 1, link.version - 1)} missing before an altered event"
                problem = self._problem(link.stream, ProblemKind.REMOVED, where, link.event_id, link.version, detail)
                state.gaps.append(_Gap(state.head + 1, link.version - 1, problem))
            state.head, state.head_hash = link.version, link.hash
        else:
            self._late(state, link, where)

    def _register(self, state: _Stream, link: _Link, where: tuple[int, int]) -> None:
        seen: _Seen = (link.hash, *where)
        state.seen[link.version] = seen
        self._ids[link.uid] = seen

    def _check_prev(self, state: _Stream, link: _Link, where: tuple[int, int]) -> None:
        """`link.prev_hash` against the hash of the version before it, when that one is known."""
        if link.version == 1:
            if link.prev_hash != GENESIS_HASH:
                detail = "v1 but prev_hash is not the genesis hash: an event before it was removed, or it was forged"
                self._problem(link.stream, ProblemKind.CHAIN_BROKEN, where, link.event_id, 1, detail)
            return
        before = state.seen.get(link.version - 1)
        if before is not None and before[0] != link.prev_hash:
            detail = (
                f"prev_hash is not the hash of v{link.version - 1} (at {_at(*before[1:])}): that event was "
                f"altered and re-sealed, or this one is not the event that followed it"
            )
            self._problem(link.stream, ProblemKind.CHAIN_BROKEN, where, link.event_id, link.version, detail)

    def _fill(self, state: _Stream, link: _Link, where: tuple[int, int]) -> None:
        """A version below the head, not seen before: it was missing and turns up late; check its links."""
        gap = self._late(state, link, where)
        if gap is None:
            return
        gap.claims[link.version] = (link.prev_hash, link.event_id)
        self._check_prev(state, link, where)
        after = state.seen.get(link.version + 1)
        claim = gap.claims.get(link.version + 1)
        if after is not None and claim is not None and claim[0] != link.hash:
            detail = (
                f"prev_hash is not the hash of v{link.version} (at {_at(*where)}): that event was "
                f"altered and re-sealed, or this one is not the event that followed it"
            )
            self._problem(link.stream, ProblemKind.CHAIN_BROKEN, after[1:], claim[1], link.version + 1, detail)

    def _late(self, state: _Stream, link: _Link, where: tuple[int, int]) -> _Gap | None:
        """Mark a missing version as arrived; the first to arrive turns its gap from removed into reordered."""
        gap = next((g for g in state.gaps if g.holds(link.version)), None)
        if gap is None:  # cannot happen: every version below the head was placed or is in a gap
            return None
        if not gap.filled:
            first = gap.problem
            detail = f"v{first.version} came before v{link.version} (at {_at(*where)})"
            reordered = replace(first, kind=ProblemKind.REORDERED, detail=detail)
            if state.first_failure is first:
                state.first_failure = reordered
            gap.problem = reordered
        gap.filled.add(link.version)
        return gap

    def _close(self, name: str, gap: _Gap) -> None:
        """At the end: versions of a reordered gap that never turned up were removed."""
        if not gap.filled:
            return  # still the REMOVED problem it was reported as
        count = gap.hi - gap.lo + 1 - len(gap.filled)
        if count:
            missing = islice((v for v in range(gap.lo, gap.hi + 1) if v not in gap.filled), 5)
            where = (gap.problem.partition, gap.problem.offset)
            shown = ", ".join(f"v{v}" for v in missing)
            detail = f"{shown}{', …' if count > 5 else ''} never turned up: removed"
            self._problem(name, ProblemKind.REMOVED, where, gap.problem.event_id, gap.problem.version, detail)

    def _problem(
        self,
        stream: str | None,
        kind: ProblemKind,
        where: tuple[int | None, int | None],  # (partition, offset); (None, None): not on the topic
        event_id: str | None,
        version: int | None,
        detail: str,
    ) -> Problem:
        tolerated = kind is ProblemKind.DUPLICATE and self._tolerate_duplicates
        severity = Severity.WARNING if tolerated else Severity.FAILURE
        problem = Problem(kind, stream, where[0], where[1], event_id, version, detail, severity)
        if stream is None:
            self._unattributed.append(problem)
            return problem
        state = self._streams.get(stream)
        if state is None:
            state = self._streams[stream] = _Stream(partition=where[0] if where[0] is not None else -1)
        if problem.severity is Severity.WARNING:
            state.warnings += 1
            state.first_warning = state.first_warning or problem
        else:
            state.failures += 1
            state.first_failure = state.first_failure or problem
        return problem


def _foreign(record: LogRecord, fields: dict[str, Any] | str) -> str | None:
    """Why the record is no event of this log at all, or None when it bears one of an event's marks."""
    ours = any(name.lower() == "ce_source" and value == SOURCE.encode() for name, value in record.headers)
    if ours or (isinstance(fields, dict) and "hash" in fields):
        return None
    size = len(record.value or b"")
    what = fields if isinstance(fields, str) else "a JSON object without an event's fields"
    return f"not an event of this log ({what}; {size:,} bytes; no flagstream CloudEvents headers)"


def _fields(value: bytes | None) -> dict[str, Any] | str:
    """The record's JSON object, or why there is none."""
    if value is None:
        return "the record has no value"
    try:
        fields = json.loads(value)
    except (ValueError, UnicodeDecodeError) as exc:
        return f"not JSON: {exc}"
    if not isinstance(fields, dict):
        return "not a JSON object"
    return fields
