"""The three cached documents and their compiled, ready-to-evaluate forms. Pure: no I/O.

A document is JSON (what Redis stores): the catalogue (definitions, system
defaults and the system's targeting rules), one org's org- and platform-level
overrides and its targeting rules, one user's overrides.
`*_document(rows)` builds it from read-model rows; `compile_*` parses it once into
the `flagcore` structures evaluation reads, so a cached request does no parsing.

Documents hold rules, never answers: a setting's pending scheduled steps travel
with it and evaluation applies those due at the request's `now`. So a cached
document stays right across a schedule boundary; nothing has to expire at it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

from events import FlagKind, ValueType, definition_stream
from events.values import BOOLEAN_VARIANTS
from flagcore import Catalog, Definition, EventRef, ScheduledStep, Setting, Variant, parse_instant
from flagcore.model import Rules, typed_fields

Row = Mapping[str, Any]


def event_block(ref: EventRef | None) -> dict[str, Any] | None:
    """The `event` block of an answer: which event set the value."""
    if ref is None:
        return None
    return {
        "id": ref.event_id,
        "stream": ref.stream,
        "version": ref.version,
        "actor": ref.actor,
        "reason": ref.reason,
        "occurred_at": ref.occurred_at,
    }


def _event_json(stream: str, row: Row) -> dict[str, Any]:
    return {
        "id": str(row["event_id"]),
        "stream": stream,
        "version": row["version"],
        "actor": row["actor"],
        "reason": row["reason"],
        "occurred_at": row["updated_at"],
    }


def _ref(doc: Mapping[str, Any]) -> EventRef:
    occurred = doc["occurred_at"]
    return EventRef(
        event_id=doc["id"],
        stream=doc["stream"],
        version=doc["version"],
        actor=doc["actor"],
        reason=doc["reason"],
        occurred_at=occurred if isinstance(occurred, datetime) else datetime.fromisoformat(occurred),
    )


def _setting_json(row: Row) -> dict[str, Any]:
    schedule, split = row.get("schedule"), row.get("split")
    return {
        "flag_key": row["flag_key"],
        "enabled": row["enabled"],
        "rollout_percentage": row["rollout_percentage"],
        "schedule": orjson.loads(schedule) if schedule else [],
        "variant": row.get("variant"),
        "split": None if split is None else orjson.loads(split),
        "event": _event_json(row["stream"], row),
    }


def _setting(doc: Mapping[str, Any]) -> Setting:
    """A setting of a document (one cached before typed values has no `variant` or `split`: the default's)."""
    steps = tuple(ScheduledStep.from_value(s) for s in doc.get("schedule") or ())
    split = doc.get("split")
    arms = None if split is None else tuple(Variant(v["name"], v["weight"]) for v in split)
    return Setting(doc["enabled"], doc["rollout_percentage"], _ref(doc["event"]), steps, doc.get("variant"), arms)


def _rules_json(row: Row) -> dict[str, Any]:
    """A `targeting_rules` row: the flag, its ordered rules (as the stream value holds them) and their event."""
    return {"flag_key": row["flag_key"], "rules": orjson.loads(row["rules"]), "event": _event_json(row["stream"], row)}


def _rules_table(docs: Iterable[Mapping[str, Any]]) -> dict[str, Rules]:
    """A document's `rules` entries (absent from one cached before rules: none) as `flagcore` reads them."""
    return {d["flag_key"]: Rules.from_value({"rules": d["rules"]}, _ref(d["event"])) for d in docs}


def _typed_json(row: Row) -> dict[str, Any]:
    """A `flags` row's typed part, as the definition value holds it (`flagcore.model.typed_fields` reads it)."""
    return {
        "value_type": row.get("value_type") or ValueType.BOOLEAN.value,
        "values": orjson.loads(row.get("variant_values") or "{}"),
        "default_variant": row.get("default_variant"),
        "off_variant": row.get("off_variant"),
    }


def _typed_listing(d: Definition) -> dict[str, Any]:
    """What a flag serves, for the listing: its type and variants (a boolean flag's implicit on/off included)."""
    values = dict(d.values) if d.value_type is not ValueType.BOOLEAN else dict(BOOLEAN_VARIANTS)
    return {
        "value_type": d.value_type.value,
        "values": values,
        "default_variant": d.default_variant,
        "off_variant": d.off_variant,
    }


def dumps(document: Mapping[str, Any]) -> bytes:
    return orjson.dumps(document, option=orjson.OPT_UTC_Z)


# --- the catalogue --------------------------------------------------------------------------


def catalog_document(
    flag_rows: Iterable[Row], system_rows: Iterable[Row], rule_rows: Iterable[Row] = ()
) -> dict[str, Any]:
    """Rows of `flags`, `system_defaults` and the system's `targeting_rules` → the catalogue document."""
    rules = [_rules_json(r) for r in sorted(rule_rows, key=lambda r: r["flag_key"])]
    return {
        "flags": [
            {
                "key": r["flag_key"],
                "kind": r["kind"],
                "description": r["description"],
                "owner": r["owner"],
                "group": r["grp"],
                "archived": r["archived"],
                "killed": bool(r.get("killed", False)),
                "variants": orjson.loads(r.get("variants") or "[]"),
                "expires_at": r.get("expires_at"),
                **_typed_json(r),
                "event": _event_json(definition_stream(r["flag_key"]), r),
            }
            for r in sorted(flag_rows, key=lambda r: r["flag_key"])
        ],
        "system": [_setting_json(r) for r in sorted(system_rows, key=lambda r: r["flag_key"])],
    } | ({"rules": rules} if rules else {})  # none: the bytes of a catalogue before rules


@dataclass(frozen=True, slots=True)
class CompiledCatalog:
    catalog: Catalog
    listing: bytes  # the body of GET /v1/flags


def compile_catalog(raw: bytes) -> CompiledCatalog:
    doc = orjson.loads(raw)
    catalog = Catalog()
    for f in doc["flags"]:
        catalog.definitions[f["key"]] = Definition(
            key=f["key"],
            kind=FlagKind(f["kind"]),
            description=f["description"],
            owner=f["owner"],
            group=f["group"],
            archived=f["archived"],
            source=_ref(f["event"]),
            killed=f.get("killed", False),
            variants=tuple(Variant(v["name"], v["weight"]) for v in f.get("variants") or ()),
            expires_at=None if f.get("expires_at") is None else parse_instant(f["expires_at"]),
            **typed_fields(f),
        )
    for s in doc["system"]:
        catalog.system[s["flag_key"]] = _setting(s)
    catalog.rules.update(_rules_table(doc.get("rules") or ()))
    system = {s["flag_key"]: s for s in doc["system"]}
    listing = {
        "flags": [
            {
                "key": f["key"],
                "kind": f["kind"],
                "description": f["description"],
                "owner": f["owner"],
                "group": f["group"],
                "archived": f["archived"],
                "killed": f.get("killed", False),
                "variants": f.get("variants") or [],
                "expires_at": f.get("expires_at"),
                **_typed_listing(catalog.definitions[f["key"]]),
                "version": f["event"]["version"],
                "event": f["event"],
                "system": None
                if f["key"] not in system
                else {
                    "enabled": system[f["key"]]["enabled"],
                    "rollout_percentage": system[f["key"]]["rollout_percentage"],
                    "schedule": system[f["key"]].get("schedule") or [],
                    "variant": system[f["key"]].get("variant"),
                    "split": system[f["key"]].get("split"),
                    "version": system[f["key"]]["event"]["version"],
                    "event": system[f["key"]]["event"],
                },
            }
            for f in doc["flags"]
        ]
    }
    return CompiledCatalog(catalog, orjson.dumps(listing))


# --- an org's overrides ------------------------------------------------------------------------


def org_document(org_id: str, rows: Iterable[Row], rule_rows: Iterable[Row] = ()) -> dict[str, Any]:
    """Org- and platform-level `overrides` rows of one org, and its `targeting_rules` → its document (may be empty)."""
    org, platform = [], []
    for r in sorted(rows, key=lambda r: (r["level"], r["platform"], r["flag_key"])):
        if r["level"] == "org":
            org.append(_setting_json(r))
        elif r["level"] == "platform":
            platform.append({"platform": r["platform"], **_setting_json(r)})
    rules = [_rules_json(r) for r in sorted(rule_rows, key=lambda r: r["flag_key"])]
    return {"org_id": org_id, "org": org, "platform": platform} | ({"rules": rules} if rules else {})


@dataclass(frozen=True, slots=True)
class CompiledOrg:
    org_id: str
    org: dict[str, Setting] = field(default_factory=dict)
    platform: dict[tuple[str, str], Setting] = field(default_factory=dict)  # (platform, flag)
    rules: dict[str, Rules] = field(default_factory=dict)  # flag → the org's targeting rules


def compile_org(raw: bytes) -> CompiledOrg:
    doc = orjson.loads(raw)
    return CompiledOrg(
        doc["org_id"],
        {s["flag_key"]: _setting(s) for s in doc["org"]},
        {(s["platform"], s["flag_key"]): _setting(s) for s in doc["platform"]},
        _rules_table(doc.get("rules") or ()),
    )


# --- a user's overrides -------------------------------------------------------------------------


def user_document(org_id: str, user_id: str, rows: Iterable[Row]) -> dict[str, Any]:
    """User-level `overrides` rows of one user → the document (usually empty: cached all the same)."""
    return {
        "org_id": org_id,
        "user_id": user_id,
        "user": [_setting_json(r) for r in sorted(rows, key=lambda r: r["flag_key"])],
    }


@dataclass(frozen=True, slots=True)
class CompiledUser:
    org_id: str
    user_id: str
    user: dict[tuple[str, str], Setting] = field(default_factory=dict)  # (user, flag)


NO_USER: dict[tuple[str, str], Setting] = {}


def compile_user(raw: bytes) -> CompiledUser:
    doc = orjson.loads(raw)
    user_id = doc["user_id"]
    return CompiledUser(doc["org_id"], user_id, {(user_id, s["flag_key"]): _setting(s) for s in doc["user"]})
