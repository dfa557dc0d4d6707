"""Hypothesis strategies for what may arrive on the changes topic: sound events, and garbage.

`sound_records()` are events as the relay publishes them (sealed, hash-chained,
CloudEvents headers, keyed by partition key). `bad_records()` are records the
projector must dead-letter, each certainly unsound by construction: random bytes,
random JSON, a sound event with one field changed (so its hash no longer holds)
or resealed with a value that breaks a rule, a wrong record key, a required
CloudEvents header missing or wrong, and missing values. Both are plain
`GarbageRecord`s, which fit `flaglog.RawRecord`; `produce()`
maps them to what a Kafka producer sends.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from hypothesis import strategies as st

from events import Level, hash_of
from tests.support.eventlog import EventLog, random_log

TOPIC = "flags.changes"
CHECKED_HEADERS = ("ce_specversion", "ce_id", "ce_type")  # what `events.from_record` insists on


@dataclass(frozen=True)
class GarbageRecord:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...]
    kind: str = "sound"  # which strategy made it: named in assertion messages


def _sound_log() -> EventLog:
    log = EventLog()
    log.define("fuzz.a")
    log.define("fuzz.b", group="other")
    log.system("fuzz.a", True)
    log.rollout("fuzz.a", 40, level=Level.SYSTEM)
    log.org("org-1", "fuzz.a", True)
    log.platform("org-1", "meta", "fuzz.a", False)
    log.user("org-1", "u-1", "fuzz.a", True)
    log.rollout("fuzz.a", 25, level=Level.ORG, org="org-1")
    log.rollout("fuzz.a", 10, level=Level.PLATFORM, org="org-1", platform="tiktok")
    log.rollout("fuzz.a", 60, level=Level.USER, org="org-1", user="u-1")
    log.org("org-1", "fuzz.a", None)
    log.user("org-1", "u-1", "fuzz.a", None)
    return log


def _as_garbage(log: EventLog) -> list[GarbageRecord]:
    return [GarbageRecord(TOPIC, 0, i, r.key, r.value, tuple(r.headers)) for i, r in enumerate(log.records())]


SOUND = _as_garbage(_sound_log()) + _as_garbage(random_log(80, orgs=["org-2", "org-3"], flags=4, users=3, seed=5))


# Sound events that set an override or default to a value (`new` is a setting, not None).
SETTINGS = [r for r in SOUND if "enabled" in (json.loads(r.value or b"{}").get("new") or {})]


def sound_records() -> st.SearchStrategy[GarbageRecord]:
    return st.sampled_from(SOUND)


# --- pieces --------------------------------------------------------------------------------------


def json_values(*, encodable: bool = False) -> st.SearchStrategy[Any]:
    """Any JSON value; `encodable`: only text that UTF-8 can encode (no lone surrogates)."""
    text = st.text(st.characters(exclude_categories=["Cs"]) if encodable else st.characters(), max_size=20)
    scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | text
    return st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
        max_leaves=12,
    )


header_values = st.none() | st.binary(max_size=40) | st.text(max_size=40).map(lambda t: t.encode("utf-8", "replace"))
header_names = st.sampled_from(["ce_specversion", "ce_id", "ce_type", "ce_subject", "content-type", "CE_ID"]) | st.text(
    st.characters(exclude_categories=["Cs"]), max_size=20
)
headers = st.lists(st.tuples(header_names, header_values), max_size=12).map(tuple)


def _fields(record: GarbageRecord) -> dict[str, Any]:
    assert record.value is not None
    fields: dict[str, Any] = json.loads(record.value)
    return fields


def _paths(fields: dict[str, Any]) -> list[tuple[str, ...]]:
    """Every field of the envelope and of its `data`, `actor`, `previous` and `new` objects."""
    paths: list[tuple[str, ...]] = [(name,) for name in fields]
    for name in ("data", "actor", "previous", "new"):
        if isinstance(fields.get(name), dict):
            paths += [(name, inner) for inner in fields[name]]
    return paths


def _set(fields: dict[str, Any], path: tuple[str, ...], value: Any, *, delete: bool) -> dict[str, Any]:
    out = json.loads(json.dumps(fields))
    target = out
    for name in path[:-1]:
        target = target[name]
    if delete:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return out


def _with(record: GarbageRecord, kind: str, **changes: Any) -> GarbageRecord:
    return replace(record, kind=kind, **changes)


# --- the bad records -----------------------------------------------------------------------------


@st.composite
def random_bytes(draw: st.DrawFn) -> GarbageRecord:
    """Bytes, key and headers of no particular shape."""
    return GarbageRecord(
        TOPIC,
        draw(st.integers(0, 2)),
        draw(st.integers(0, 2**40)),
        draw(st.none() | st.binary(max_size=20)),
        draw(st.binary(max_size=200)),
        draw(headers),
        "random bytes",
    )


@st.composite
def random_json(draw: st.DrawFn) -> GarbageRecord:
    """Any JSON document (an object with envelope-like keys, often) under a sound event's key and headers."""
    base = draw(sound_records())
    names = st.sampled_from(sorted(_fields(base))) | st.text(max_size=10)
    document = draw(json_values() | st.dictionaries(names, json_values(), max_size=16))
    return _with(base, "random JSON", value=json.dumps(document).encode())


@st.composite
def one_field_changed(draw: st.DrawFn) -> GarbageRecord:
    """A sound event with one field (of the envelope, its data, actor or values) replaced or removed.

    Not resealed: the hash no longer matches, so it is unsound whatever the new value is.
    """
    base = draw(sound_records())
    fields = _fields(base)
    path = draw(st.sampled_from(_paths(fields)))
    delete = draw(st.booleans())
    new = "" if delete else draw(json_values())
    if _canonical(new) == _canonical(_get(fields, path)):
        delete = True  # the same value again would leave the event sound
    changed = _set(fields, path, new, delete=delete)
    if path == ("hash",) and not delete:  # the one right `hash` would leave it sound
        changed["hash"] = _flip(fields["hash"])
    return _with(base, f"{'removed' if delete else 'changed'} {'.'.join(path)}", value=json.dumps(changed).encode())


def _get(fields: dict[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = fields
    for name in path:
        value = value[name]
    return value


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def _flip(digest: str) -> str:
    return ("1" if digest[0] == "0" else "0") + digest[1:]


# Resealed changes (the hash recomputed, as a forger or a buggy producer would): each one breaks
# a rule the decoder checks beyond the hash.
RESEALED_BREAKS: list[tuple[str, tuple[str, ...], Any]] = [
    ("version 0", ("version",), 0),
    ("version past int4", ("version",), 2**31),
    ("sequence past int8", ("sequence",), 2**63),
    ("unknown type", ("type",), "FlagExploded"),
    ("schema version 0", ("schema_version",), 0),
    ("future schema version", ("schema_version",), 99),
    ("naive time", ("occurred_at",), "2026-01-01T00:00:00"),
    ("bad event id", ("event_id",), "not-a-uuid"),
    ("short prev_hash", ("prev_hash",), "abc"),
    ("blank reason", ("reason",), ""),
    ("NUL in reason", ("reason",), "a\u0000b"),
    ("empty actor", ("actor",), {}),
    ("stream of another flag", ("stream",), "flag/someone.else"),
    ("flag key of another flag", ("flag_key",), "someone.else"),
    ("org of another tenant", ("org_id",), "someone-else"),
    ("extra field", ("surprise",), 1),
    ("data not an object", ("data",), [1, 2]),
]


@st.composite
def resealed_break(draw: st.DrawFn) -> GarbageRecord:
    base = draw(sound_records())
    name, path, value = draw(st.sampled_from(RESEALED_BREAKS))
    fields = _set(_fields(base), path, value, delete=False)
    fields["hash"] = hash_of(fields)
    return _with(base, f"resealed: {name}", value=json.dumps(fields).encode())


@st.composite
def resealed_bad_setting(draw: st.DrawFn) -> GarbageRecord:
    """A setting whose `new` is not what its change makes of `previous`, resealed."""
    base = draw(st.sampled_from(SETTINGS))
    fields = _fields(base)
    new = draw(
        st.fixed_dictionaries({"enabled": st.none() | st.booleans(), "rollout_percentage": st.none() | st.integers()})
    )
    if new == fields["new"]:
        new = {**new, "rollout_percentage": (new["rollout_percentage"] or 0) + 101}
    fields["new"] = new
    fields["hash"] = hash_of(fields)
    return _with(base, "resealed: new differs from the transition", value=json.dumps(fields).encode())


@st.composite
def resealed_random_change(draw: st.DrawFn) -> GarbageRecord:
    """A sound event with one field replaced or removed and the hash recomputed: sound or not, by chance.

    Past the hash check, this reaches the model validation, upcasting and transition checks.
    """
    base = draw(sound_records())
    fields = _fields(base)
    path = draw(st.sampled_from([p for p in _paths(fields) if p != ("hash",)]))
    delete = draw(st.booleans())
    changed = _set(fields, path, None if delete else draw(json_values(encodable=True)), delete=delete)
    changed["hash"] = hash_of(changed)
    return _with(
        base, f"resealed: {'removed' if delete else 'changed'} {'.'.join(path)}", value=json.dumps(changed).encode()
    )


@st.composite
def wrong_key(draw: st.DrawFn) -> GarbageRecord:
    base = draw(sound_records())
    key = draw(st.none() | st.binary(max_size=20).filter(lambda k: k != base.key))
    return _with(base, "wrong record key", key=key)


@st.composite
def wrong_required_header(draw: st.DrawFn) -> GarbageRecord:
    """One of the headers the decoder checks removed, or every copy of it given another value."""
    base = draw(sound_records())
    name = draw(st.sampled_from(CHECKED_HEADERS))
    original = dict(base.headers)[name]
    if draw(st.booleans()):
        kept = tuple(h for h in base.headers if h[0].lower() != name)
        return _with(base, f"header {name} missing", headers=kept)
    other = draw(header_values.filter(lambda v: v != original))
    changed = tuple((k, other if k.lower() == name else v) for k, v in base.headers)
    return _with(base, f"header {name} wrong", headers=changed)


@st.composite
def garbled_headers(draw: st.DrawFn) -> GarbageRecord:
    """A sound event under headers of no particular shape (no `ce_id`, so certainly refused)."""
    base = draw(sound_records())
    noise = tuple(h for h in draw(headers) if h[0].lower() != "ce_id")
    return _with(base, "garbled headers", headers=noise)


@st.composite
def no_value(draw: st.DrawFn) -> GarbageRecord:
    base = draw(sound_records())
    return _with(base, "no value (tombstone)", value=draw(st.sampled_from([None, b""])))


BAD_KINDS: tuple[Callable[[], st.SearchStrategy[GarbageRecord]], ...] = (
    random_bytes,
    random_json,
    one_field_changed,
    resealed_break,
    resealed_bad_setting,
    wrong_key,
    wrong_required_header,
    garbled_headers,
    no_value,
)


def bad_records() -> st.SearchStrategy[GarbageRecord]:
    """Every kind of bad record above."""
    return st.one_of([kind() for kind in BAD_KINDS])
