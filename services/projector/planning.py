"""The projector's pure part: records → decoded events or dead letters → per-tenant write plans.

No I/O here. `decode_record` turns one consumed record into a `Decoded` event or a
`DeadLetter` (with the reason); `plan_tenant` folds one tenant's decoded events onto
the stream heads stored in Postgres and returns the rows to write, the new heads,
the history rows and the cache documents the change invalidates. `Store` and
`Projector` (in `services.projector.projection`) do the I/O around it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, NamedTuple, Protocol
from uuid import UUID

import orjson

from events import GENESIS_HASH, DecodeError, Envelope, FlagChange, FlagKind, Level, Scope, from_record
from flagcore import InvalidTransition, format_instant, parse_instant, transition

MAX_INT4 = 2**31 - 1
MAX_INT8 = 2**63 - 1
# A JSON-escaped NUL (an odd run of backslashes before u0000): Postgres text and jsonb cannot hold it.
NUL_ESCAPE = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")
KIND_VALUES = frozenset(k.value for k in FlagKind)


class RawRecord(Protocol):
    """What the projector needs of a consumed Kafka record (aiokafka's ConsumerRecord fits)."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def headers(self) -> Sequence[tuple[str, bytes]]: ...


class TopicPartition(NamedTuple):
    topic: str
    partition: int


@dataclass(frozen=True, slots=True)
class Head:
    """The last applied version and hash of a stream."""

    version: int
    hash: str


@dataclass(frozen=True, slots=True)
class Decoded:
    """A sound event, where it was read, its scope and (for a setting) the stream value it sets."""

    record: RawRecord
    envelope: Envelope
    scope: Scope | None  # None for definition events
    value: dict[str, Any] | None  # settings: transition(previous, data); definitions: set when planned

    @property
    def tp(self) -> TopicPartition:
        return TopicPartition(self.record.topic, self.record.partition)

    @property
    def offset(self) -> int:
        return self.record.offset


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A record the projector cannot apply; it goes to the dead-letter topic as it came."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]
    reason: str

    @classmethod
    def of(cls, record: RawRecord, reason: str) -> DeadLetter:
        return cls(
            record.topic,
            record.partition,
            record.offset,
            record.key,
            record.value,
            tuple(record.headers or ()),
            reason,
        )

    def out_headers(self) -> list[tuple[str, bytes]]:
        """The original headers plus where the record came from and why it was rejected."""
        return [
            *self.headers,
            ("dlq_reason", self.reason.encode()),
            ("dlq_topic", self.topic.encode()),
            ("dlq_partition", str(self.partition).encode()),
            ("dlq_offset", str(self.offset).encode()),
        ]


# --- cache documents an event invalidates ------------------------------------


@dataclass(frozen=True, slots=True, order=True)
class CacheTarget:
    """One cached document of the query service: the catalogue, an org's rules, a user's rules."""

    scope: str  # "catalog" | "org" | "user"
    org_id: str | None = None
    user_id: str | None = None

    @classmethod
    def of(cls, scope: Scope | None) -> CacheTarget:
        """The document an event at `scope` changes (None: a definition event)."""
        if scope is None or scope.level is Level.SYSTEM:
            return CATALOG
        assert scope.org_id is not None
        if scope.level is Level.USER:
            return cls("user", scope.org_id, scope.user_id)
        return cls("org", scope.org_id)

    def message(self) -> dict[str, str]:
        """The invalidation message, as docs/architecture.md gives it."""
        if self.scope == "catalog":
            return {"scope": "catalog"}
        assert self.org_id is not None
        if self.scope == "org":
            return {"scope": "org", "org_id": self.org_id}
        assert self.user_id is not None
        return {"scope": "user", "org_id": self.org_id, "user_id": self.user_id}


CATALOG = CacheTarget("catalog")


# --- rows ---------------------------------------------------------------------


class DefinitionRow(NamedTuple):
    flag_key: str
    kind: str
    description: str
    owner: str | None
    grp: str
    archived: bool
    version: int
    event_id: UUID
    actor: str
    reason: str
    updated_at: datetime
    killed: bool
    variants: str  # JSON text: [{"name", "weight"}]
    expires_at: datetime | None


class SettingRow(NamedTuple):
    """A row of `system_defaults` (the org/platform/user part is in the key)."""

    enabled: bool | None
    rollout_percentage: int | None
    stream: str
    version: int
    event_id: UUID
    actor: str
    reason: str
    updated_at: datetime
    schedule: str | None  # JSON text of the pending steps; None when nothing is scheduled


class OverrideKey(NamedTuple):
    level: str
    platform: str  # '' when not at platform level
    user_id: str  # '' when not at user level
    flag_key: str


class HistoryRow(NamedTuple):
    event_id: UUID
    sequence: int
    stream: str
    version: int
    type: str
    flag_key: str
    level: str | None
    platform: str | None
    user_id: str | None
    actor_id: str
    actor_name: str
    reason: str
    previous: str | None  # JSON text
    new: str | None
    occurred_at: datetime


def setting_row(envelope: Envelope, value: dict[str, Any]) -> SettingRow:
    return SettingRow(
        value.get("enabled"),
        value.get("rollout_percentage"),
        envelope.stream,
        envelope.version,
        envelope.event_id,
        envelope.actor.name,
        envelope.reason,
        envelope.occurred_at,
        _json(value["schedule"]) if value.get("schedule") else None,
    )


def definition_row(envelope: Envelope, value: dict[str, Any]) -> DefinitionRow:
    return DefinitionRow(
        envelope.flag_key,
        value["kind"],
        value["description"],
        value.get("owner"),
        value["group"],
        bool(value.get("archived", False)),
        envelope.version,
        envelope.event_id,
        envelope.actor.name,
        envelope.reason,
        envelope.occurred_at,
        bool(value.get("killed", False)),
        orjson.dumps(value.get("variants") or []).decode(),
        None if value.get("expires_at") is None else parse_instant(value["expires_at"]),
    )


def stored_definition(row: Mapping[str, Any]) -> dict[str, Any]:
    """A `flags` row as the definition stream value `transition` takes (optional keys only when set)."""
    value: dict[str, Any] = {
        "kind": row["kind"],
        "description": row["description"],
        "owner": row["owner"],
        "group": row["grp"],
        "archived": row["archived"],
    }
    if row["killed"]:
        value["killed"] = True
    variants = orjson.loads(row["variants"])
    if variants:
        value["variants"] = variants
    if row["expires_at"] is not None:
        value["expires_at"] = format_instant(row["expires_at"])
    return value


def override_key(scope: Scope, flag_key: str) -> OverrideKey:
    assert scope.level is not Level.SYSTEM
    return OverrideKey(
        scope.level.value,
        scope.platform.value if scope.platform is not None else "",
        scope.user_id or "",
        flag_key,
    )


def history_row(envelope: Envelope, scope: Scope | None) -> HistoryRow:
    return HistoryRow(
        envelope.event_id,
        envelope.sequence,
        envelope.stream,
        envelope.version,
        envelope.type,
        envelope.flag_key,
        None if scope is None else scope.level.value,
        None if scope is None or scope.platform is None else scope.platform.value,
        None if scope is None else scope.user_id,
        envelope.actor.id,
        envelope.actor.name,
        envelope.reason,
        _json(envelope.previous),
        _json(envelope.new),
        envelope.occurred_at,
    )


def _json(value: dict[str, Any] | None) -> str | None:
    return None if value is None else orjson.dumps(value).decode()


# --- decoding -------------------------------------------------------------------


def decode_record(record: RawRecord) -> Decoded | DeadLetter | None:
    """Decode and check one record; never raises for a bad record.

    None: a sound event the read models do not hold (API key events).
    """
    try:
        if record.value is not None and b"\\u0000" in record.value and NUL_ESCAPE.search(record.value):
            raise DecodeError("contains a NUL character, which Postgres cannot store")
        envelope = from_record(record.value, record.headers or ())
        if record.key != envelope.partition_key.encode():
            # Per-stream order holds only if every event of an org is keyed (so partitioned) by it.
            raise DecodeError(f"record key {record.key!r} is not the event's partition key")
        if not isinstance(envelope.data, FlagChange):
            return None
        scope = envelope.data.scope
        value = _checked_value(envelope, scope)
    except DecodeError as exc:
        return DeadLetter.of(record, exc.reason)
    except Exception as exc:  # any other validation failure is still the record's fault
        return DeadLetter.of(record, f"{type(exc).__name__}: {exc}")
    return Decoded(record, envelope, scope, value)


def _checked_value(envelope: Envelope, scope: Scope | None) -> dict[str, Any] | None:
    """A setting's new value, after checking it agrees with the change and fits the tables.

    A definition's value is computed when planning, from the stored definition, as the
    fold does: its envelope may carry an older schema's value shape (see upcasting).
    """
    if envelope.version > MAX_INT4 or envelope.sequence > MAX_INT8:
        raise DecodeError("version or sequence out of range")
    if scope is None:
        return None
    try:
        value = transition(envelope.previous, envelope.data, at=envelope.occurred_at)
    except InvalidTransition as exc:
        raise DecodeError(f"invalid transition: {exc}") from exc
    if value != envelope.new:
        raise DecodeError("`new` differs from transition(previous, data)")
    if value is not None:
        _check_setting(value)
    return value


def definition_value(current: dict[str, Any] | None, envelope: Envelope) -> dict[str, Any]:
    """The definition after `envelope`, from the current one; `DecodeError` when it cannot apply."""
    try:
        value = transition(current, envelope.data)
    except InvalidTransition as exc:
        raise DecodeError(f"invalid transition: {exc}") from exc
    _check_definition(value)
    assert value is not None
    return value


def _check_definition(value: dict[str, Any] | None) -> None:
    ok = (
        value is not None
        and value.get("kind") in KIND_VALUES
        and isinstance(value.get("description"), str)
        and isinstance(value.get("owner"), str | None)
        and isinstance(value.get("group"), str)
        and bool(value.get("group"))
        and isinstance(value.get("archived", False), bool)
        and isinstance(value.get("killed", False), bool)
        and isinstance(value.get("variants", []), list)
    )
    if not ok:
        raise DecodeError(f"definition value is malformed: {value!r}")


def _check_setting(value: dict[str, Any]) -> None:
    steps = value.get("schedule") or []
    ok = _setting_ok(value) and isinstance(steps, list) and all(_step_ok(s) for s in steps)
    if not ok:
        raise DecodeError(f"setting value is malformed: {value!r}")


def _setting_ok(value: Any) -> bool:
    if not isinstance(value, dict):
        return False
    enabled = value.get("enabled")
    pct = value.get("rollout_percentage")
    return isinstance(enabled, bool | None) and (pct is None or (type(pct) is int and 0 <= pct <= 100))


def _step_ok(step: Any) -> bool:
    if not (_setting_ok(step) and isinstance(step.get("at"), str)):
        return False
    try:
        parse_instant(step["at"])
    except ValueError:
        return False
    return True


# --- grouping and planning ----------------------------------------------------------


def group_by_tenant(decoded: Iterable[Decoded]) -> dict[str | None, list[Decoded]]:
    """Events per org (None: definitions and system settings), each list in log order.

    A stream belongs to one org, so tenants are independent and can be applied in any order.
    """
    groups: dict[str | None, list[Decoded]] = {}
    for item in decoded:
        groups.setdefault(item.envelope.org_id, []).append(item)
    return groups


@dataclass(slots=True)
class TenantPlan:
    """What one tenant's part of a batch writes: final rows per key, heads, history."""

    org_id: str | None
    applied: int = 0
    duplicates: int = 0
    chain_breaks: list[str] = field(default_factory=list)
    heads: dict[str, Head] = field(default_factory=dict)
    definitions: dict[str, DefinitionRow] = field(default_factory=dict)
    system: dict[str, SettingRow | None] = field(default_factory=dict)  # None: delete
    overrides: dict[OverrideKey, SettingRow | None] = field(default_factory=dict)  # None: delete
    history: list[HistoryRow] = field(default_factory=list)
    invalidations: set[CacheTarget] = field(default_factory=set)
    rejected: list[tuple[Decoded, str]] = field(default_factory=list)  # for the dead letters

    @property
    def changed(self) -> bool:
        return self.applied > 0

    def absorb(self, later: TenantPlan) -> None:
        """Add the plan of this tenant's next events (planned on this plan's heads): one plan for both.

        Last row per key wins, as if both had been planned as one batch; history rows are all kept.
        """
        assert later.org_id == self.org_id
        self.applied += later.applied
        self.duplicates += later.duplicates
        self.chain_breaks += later.chain_breaks
        self.heads.update(later.heads)
        self.definitions.update(later.definitions)
        self.system.update(later.system)
        self.overrides.update(later.overrides)
        self.history += later.history
        self.invalidations |= later.invalidations
        self.rejected += later.rejected


def plan_tenant(
    org_id: str | None,
    items: Sequence[Decoded],
    stored: Mapping[str, Head],
    definitions: Mapping[str, dict[str, Any]] | None = None,
) -> TenantPlan:
    """Fold one tenant's events (in log order) onto the stored stream heads.

    An event at or below its stream's head is a duplicate and skipped. A `prev_hash`
    that is not the head's hash is recorded as a chain break, and still applied:
    the log is the record, the projector only reports what it sees. Definition
    events apply to `definitions`, the stored definitions of their flags; one that
    cannot apply is rejected (it goes to the dead letters).
    """
    plan = TenantPlan(org_id)
    current = dict(definitions or {})
    for item in items:
        env = item.envelope
        head = plan.heads.get(env.stream) or stored.get(env.stream)
        if head is not None and env.version <= head.version:
            plan.duplicates += 1
            continue
        if item.scope is None:
            try:
                value = definition_value(current.get(env.flag_key), env)
            except DecodeError as exc:
                plan.rejected.append((item, exc.reason))
                continue
            current[env.flag_key] = value
            item = replace(item, value=value)
        expected_version = 1 if head is None else head.version + 1
        expected_hash = head.hash if head is not None else GENESIS_HASH
        if env.prev_hash != expected_hash or env.version != expected_version:
            plan.chain_breaks.append(
                f"{env.stream} v{env.version} (event {env.event_id}): expected v{expected_version} "
                f"after {expected_hash[:12]}…, got prev_hash {env.prev_hash[:12]}…"
            )
        plan.heads[env.stream] = Head(env.version, env.hash)
        _place(plan, item)
        plan.history.append(history_row(env, item.scope))
        plan.invalidations.add(CacheTarget.of(item.scope))
        plan.applied += 1
    return plan


def _place(plan: TenantPlan, item: Decoded) -> None:
    env, scope, value = item.envelope, item.scope, item.value
    if scope is None:
        assert value is not None  # computed by plan_tenant
        plan.definitions[env.flag_key] = definition_row(env, value)
    elif scope.level is Level.SYSTEM:
        plan.system[env.flag_key] = None if value is None else setting_row(env, value)
    else:
        row = None if value is None else setting_row(env, value)
        plan.overrides[override_key(scope, env.flag_key)] = row


def next_offsets(records: Iterable[RawRecord]) -> dict[TopicPartition, int]:
    """Per partition, the offset after the last record."""
    result: dict[TopicPartition, int] = {}
    for r in records:
        tp = TopicPartition(r.topic, r.partition)
        result[tp] = max(result.get(tp, 0), r.offset + 1)
    return result


class HeadCache:
    """Stream heads this process has written or read, so a batch need not read them again.

    Valid only while nobody else applies the same partitions: every batch compares
    the offsets it locked with the ones this cache last committed, and any
    difference (another instance, a lost commit acknowledgement) empties it.
    `complete` means the cache holds every head there is (a projection that
    started on an empty database), so a stream it lacks has no head.
    """

    def __init__(self, max_streams: int = 200_000) -> None:
        self.heads: dict[str, Head] = {}
        self.complete = False
        self._expected: dict[TopicPartition, int] = {}
        self._max = max_streams

    def reset(self) -> None:
        self.heads = {}
        self.complete = False
        self._expected = {}

    @property
    def started(self) -> bool:
        return bool(self._expected)

    def track(self, stored: dict[TopicPartition, int], *, database_was_empty: bool = False) -> None:
        """Check the offsets just locked for a batch against what this cache last committed."""
        if any(tp in self._expected and self._expected[tp] != offset for tp, offset in stored.items()):
            self.reset()
        if not self._expected:
            self.complete = database_was_empty
        for tp, offset in stored.items():
            if tp not in self._expected:
                if offset > 0:  # applied before this cache started: its heads are not here
                    self.complete = False
                self._expected[tp] = offset

    def lookup(self, streams: Iterable[str]) -> tuple[dict[str, Head], list[str]]:
        """Known heads, and the streams whose head must be read from the database."""
        known: dict[str, Head] = {}
        missing: list[str] = []
        for stream in streams:
            head = self.heads.get(stream)
            if head is not None:
                known[stream] = head
            elif not self.complete:
                missing.append(stream)
        return known, missing

    def committed(self, heads: dict[str, Head], offsets: dict[TopicPartition, int]) -> None:
        """After a commit: remember the heads read or written and the offsets stored."""
        if len(self.heads) + len(heads) > self._max:
            self.reset()
            return
        self.heads.update(heads)
        for tp, offset in offsets.items():
            self._expected[tp] = max(offset, self._expected.get(tp, 0))
