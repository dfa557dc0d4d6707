"""A fast decode path for replay: the common setting events checked without building them through pydantic.

`decode_fast(record)` returns exactly what `flaglog.decoding.decode_record(record)` returns,
and `decode_event(body)` what `events.decode(body)` returns (time travel reads the
event store with it).
It accepts only the shape a canonical producer writes for the plain setting
events (set/clear at a level, rollout percentage, current schema, no schedule in
`previous`/`new`), checks every constraint the envelope and change models would
check, verifies the hash over the exact record bytes, and then builds the same
`Envelope` and change without validating them again. Anything else (an unknown or
definition type, an older schema version to upcast, odd headers, a non-canonical
body, a value that fails any check) goes to the full `decode_record`, so dead
letters and upcasting behave exactly as in the live projector. Why: a rebuild
spends most of its time in pydantic validation and the stdlib JSON encoder.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import orjson
from pydantic import BaseModel

from events import (
    Actor,
    Envelope,
    Level,
    OrgOverrideCleared,
    OrgOverrideSet,
    Platform,
    PlatformOverrideCleared,
    PlatformOverrideSet,
    RolloutPercentageSet,
    Scope,
    SystemDefaultSet,
    UserOverrideCleared,
    UserOverrideSet,
    decode,
)
from events.cloudevents import SPEC_VERSION, TYPE_PREFIX
from events.vocabulary import FLAG_KEY_PATTERN, MAX_FLAG_KEY, ORG_ID_PATTERN, USER_ID_PATTERN
from flagcore import InvalidTransition, transition
from flaglog.checks import MAX_INT4, MAX_INT8
from flaglog.dead_letters import DeadLetter
from flaglog.decoding import Decoded, decode_record
from flaglog.records import RawRecord

__all__ = ["decode_event", "decode_fast"]

ENVELOPE_KEYS = frozenset(Envelope.model_fields)
SPEC_VERSION_BYTES = SPEC_VERSION.encode()
# What `events.to_record` writes (a traced change's trace context too); any other name (another case, an
# extra header) takes the full path.
HEADER_NAMES = frozenset(
    {"ce_specversion", "ce_id", "ce_source", "ce_type", "ce_time", "ce_subject", "ce_streamversion", "ce_sequence",
     "ce_partitionkey", "content-type", "traceparent", "ce_traceparent"}
)  # fmt: skip
# `$` would also match before a final newline in Python; the models' regexes do not.
FLAG_KEY = re.compile(FLAG_KEY_PATTERN.rstrip("$") + r"\Z")
ORG_ID = re.compile(ORG_ID_PATTERN.rstrip("$") + r"\Z")
USER_ID = re.compile(USER_ID_PATTERN.rstrip("$") + r"\Z")
HEX64 = re.compile(r"[0-9a-f]{64}\Z")
INSTANT = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?Z\Z")
CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z")
PLATFORMS = {p.value: p for p in Platform}
LEVELS = {lv.value: lv for lv in Level}
SETTING_KEYS = frozenset({"enabled", "rollout_percentage"})
# The data keys each fast type's canonical JSON carries (model_dump writes every field).
FAST_TYPES: dict[str, tuple[type[Any], frozenset[str]]] = {
    cls.model_fields["type"].default: (cls, frozenset(cls.model_fields))
    for cls in (
        SystemDefaultSet,
        OrgOverrideSet,
        OrgOverrideCleared,
        PlatformOverrideSet,
        PlatformOverrideCleared,
        UserOverrideSet,
        UserOverrideCleared,
        RolloutPercentageSet,
    )
}


def _builder(cls: type[BaseModel]) -> Callable[[dict[str, Any]], Any]:
    """`cls.model_construct(**values)` for values naming every field, without its walk over fields and aliases.

    What `model_construct` sets, checked to be all it would do for `cls`: no aliases, no
    extra fields kept, no private attributes, no post-init. The checks above did the validation.
    """
    assert cls.model_config.get("extra") != "allow" and not cls.__pydantic_post_init__
    assert not cls.__private_attributes__ and not cls.__pydantic_root_model__
    assert all(f.alias is None and f.validation_alias is None for f in cls.__pydantic_fields__.values())
    names = tuple(cls.__pydantic_fields__)
    new, setattr_ = cls.__new__, object.__setattr__

    def build(values: dict[str, Any]) -> Any:
        if len(values) != len(names):
            raise _Unusual
        model = new(cls)
        setattr_(model, "__dict__", {name: values[name] for name in names})  # the fields' order, as pydantic's
        setattr_(model, "__pydantic_fields_set__", set(names))
        setattr_(model, "__pydantic_extra__", None)
        setattr_(model, "__pydantic_private__", None)
        return model

    return build


_build_envelope = _builder(Envelope)
_BUILDERS = {cls: _builder(cls) for cls, _ in FAST_TYPES.values()}
ACTORS_KEPT = 10_000


class _Unusual(Exception):
    """Not the plain shape this path knows: let the full decoder decide."""


def decode_event(body: bytes) -> Envelope:
    """`events.decode(body)`, faster for the plain setting events; raises `DecodeError` as it does."""
    try:
        return _envelope(body)[0]
    except Exception:
        return decode(body)


def decode_fast(record: RawRecord) -> Decoded | DeadLetter | None:
    """`decode_record(record)`, faster for the plain setting events; never raises for a bad record."""
    try:
        return _decode(record)
    except _Unusual:
        return decode_record(record)
    except Exception:  # anything unexpected: the full path gives the verdict
        return decode_record(record)


def _decode(record: RawRecord) -> Decoded:
    envelope, scope, raw_id = _envelope(record.value)
    _check_headers(record.headers, raw_id, envelope.type)
    if record.key != scope.partition_key.encode():
        raise _Unusual
    try:
        if transition(envelope.previous, envelope.data, at=envelope.occurred_at) != envelope.new:
            raise _Unusual
    except InvalidTransition as exc:
        raise _Unusual from exc
    return Decoded(record, envelope, scope, envelope.new)


def _envelope(value: bytes | None) -> tuple[Envelope, Scope, str]:
    """What `events.decode(value)` returns (and the change's scope and event id as written), plain settings only."""
    if value is None or b"\\u0000" in value:
        raise _Unusual
    fields = orjson.loads(value)
    if type(fields) is not dict or fields.keys() != ENVELOPE_KEYS:
        raise _Unusual
    if orjson.dumps(fields, option=orjson.OPT_SORT_KEYS) != value:
        raise _Unusual  # not canonical: the hash must be computed as the full path does
    kind = fields["type"]
    known = FAST_TYPES.get(kind) if type(kind) is str else None
    if known is None or fields["schema_version"] != 1 or type(fields["schema_version"]) is not int:
        raise _Unusual
    change_type, data_keys = known
    raw_id = fields["event_id"]
    event_id = _event_id(raw_id)
    data = fields["data"]
    if type(data) is not dict or data.keys() != data_keys or data["type"] != kind:
        raise _Unusual
    change, scope = _change(change_type, data)
    org_id = scope.org_id
    flag_key = data["flag_key"]
    stream = scope.stream(flag_key)
    if fields["stream"] != stream or fields["org_id"] != org_id or fields["flag_key"] != flag_key:
        raise _Unusual
    version, sequence = fields["version"], fields["sequence"]
    if type(version) is not int or type(sequence) is not int or not (1 <= version <= MAX_INT4):
        raise _Unusual
    if not 1 <= sequence <= MAX_INT8:
        raise _Unusual
    actor = fields["actor"]
    if type(actor) is not dict or actor.keys() != {"id", "name"} or not (_text(actor["id"]) and _text(actor["name"])):
        raise _Unusual
    reason = fields["reason"]
    if type(reason) is not str or reason != reason.strip() or not 1 <= len(reason) <= 500:
        raise _Unusual
    prev_hash, sealed = fields["prev_hash"], fields["hash"]
    if type(prev_hash) is not str or type(sealed) is not str or not (HEX64.match(prev_hash) and HEX64.match(sealed)):
        raise _Unusual
    previous, new = _plain_setting(fields["previous"]), _plain_setting(fields["new"])
    occurred_at = _instant(fields["occurred_at"])
    del fields["hash"]
    if hashlib.sha256(orjson.dumps(fields, option=orjson.OPT_SORT_KEYS)).hexdigest() != sealed:
        raise _Unusual
    envelope = _build_envelope(
        {
            "event_id": event_id, "type": kind, "schema_version": 1, "stream": stream, "version": version,
            "sequence": sequence, "occurred_at": occurred_at, "org_id": org_id, "flag_key": flag_key,
            "actor": _actor(actor["id"], actor["name"]), "reason": reason, "previous": previous, "new": new,
            "data": change, "prev_hash": prev_hash, "hash": sealed,
        }
    )  # fmt: skip
    return envelope, scope, raw_id


def _event_id(raw: Any) -> UUID:
    if type(raw) is not str or not CANONICAL_UUID.match(raw):
        raise _Unusual  # only the form `str(UUID)` writes: then `UUID(raw)` gives it back
    return UUID(raw)


def _check_headers(headers: Any, event_id: str, kind: str) -> None:
    """The CloudEvents headers `from_record` requires, read the same way (last one of a name wins).

    Compared as bytes; a header name outside the lower-case ones a producer writes goes to the full path.
    """
    ce = dict(headers or ())
    if not ce.keys() <= HEADER_NAMES:
        raise _Unusual
    if ce.get("ce_specversion") != SPEC_VERSION_BYTES or ce.get("ce_id") != event_id.encode():
        raise _Unusual
    if ce.get("ce_type") != f"{TYPE_PREFIX}{kind}.v1".encode():
        raise _Unusual


def _change(change_type: type[Any], data: dict[str, Any]) -> tuple[Any, Scope]:
    """The change model (built unvalidated after checking each field as the model would) and its scope."""
    flag_key = data["flag_key"]
    if type(flag_key) is not str or len(flag_key) > MAX_FLAG_KEY or not FLAG_KEY.match(flag_key):
        raise _Unusual
    values: dict[str, Any] = {"flag_key": flag_key, "type": data["type"]}
    org_id = data.get("org_id")
    if "org_id" in data and org_id is not None and (type(org_id) is not str or not ORG_ID.match(org_id)):
        raise _Unusual
    platform = data.get("platform")
    if platform is not None:
        platform = PLATFORMS.get(platform) if type(platform) is str else None
        if platform is None:
            raise _Unusual
    user_id = data.get("user_id")
    if user_id is not None and (type(user_id) is not str or not USER_ID.match(user_id)):
        raise _Unusual
    if "enabled" in data:
        if type(data["enabled"]) is not bool:
            raise _Unusual
        values["enabled"] = data["enabled"]
    if change_type is RolloutPercentageSet:
        level = LEVELS.get(data["level"]) if type(data["level"]) is str else None
        pct = data["percentage"]
        if level is None or (pct is not None and (type(pct) is not int or not 0 <= pct <= 100)):
            raise _Unusual
        scope = Scope(level, org_id, platform, user_id)  # raises for an inconsistent scope
        values.update(level=level, org_id=org_id, platform=platform, user_id=user_id, percentage=pct)
    else:
        if any(data[name] is None for name in ("org_id", "platform", "user_id") if name in data):
            raise _Unusual  # required there, never None
        level = Level.SYSTEM if org_id is None else Level.USER if user_id else Level.PLATFORM if platform else Level.ORG
        scope = Scope(level, org_id, platform, user_id)
        if org_id is not None:
            values["org_id"] = org_id
        if platform is not None:
            values["platform"] = platform
        if user_id is not None:
            values["user_id"] = user_id
    return _BUILDERS[change_type](values), scope


_actors: dict[tuple[str, str], Actor] = {}


def _actor(actor_id: str, name: str) -> Actor:
    """Actors repeat across a log; the model is frozen, so one instance can serve many envelopes."""
    actor = _actors.get((actor_id, name))
    if actor is None:
        if len(_actors) >= ACTORS_KEPT:
            _actors.clear()
        actor = _actors[actor_id, name] = Actor.model_construct(id=actor_id, name=name)
    return actor


def _text(value: Any) -> bool:
    return type(value) is str and 1 <= len(value) <= 200


def _plain_setting(value: Any) -> dict[str, Any] | None:
    """None or `{"enabled", "rollout_percentage"}` of bool/int/None: no schedule, nothing else."""
    if value is None:
        return None
    if type(value) is not dict or value.keys() != SETTING_KEYS:
        raise _Unusual
    enabled, pct = value["enabled"], value["rollout_percentage"]
    if not (enabled is None or type(enabled) is bool) or not (pct is None or (type(pct) is int and 0 <= pct <= 100)):
        raise _Unusual
    return value


def _instant(raw: Any) -> datetime:
    if type(raw) is not str or not INSTANT.match(raw):
        raise _Unusual
    return datetime.fromisoformat(raw).astimezone(UTC)
