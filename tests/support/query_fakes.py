"""The query service's `DocumentSource` in memory: documents built from a folded state, as Postgres would give them.

`catalog_rows` and `override_rows` turn a `flagcore` state into rows shaped like the read
models' (`flags`, `system_defaults`, `overrides`), so the documents go through the same
builders (`services.query.documents`) as the Postgres source's rows do;
tests/contract/test_document_source.py holds it and `PostgresDocuments` to the same documents.
"""

from __future__ import annotations

import uuid
from typing import Any

import orjson

from events import ValueType
from flagcore import Catalog, Definition, FlagState, Setting, TenantRules
from flagcore.model import Rules
from services.query.documents import catalog_document, dumps, org_document, user_document
from services.query.errors import Unavailable


def setting_row(flag_key: str, s: Setting, **extra: Any) -> dict[str, Any]:
    assert s.source is not None
    steps = [step.to_value() for step in s.schedule]
    return {
        "flag_key": flag_key,
        "enabled": s.enabled,
        "rollout_percentage": s.rollout_percentage,
        "stream": s.source.stream,
        "version": s.source.version,
        "event_id": uuid.UUID(s.source.event_id),
        "actor": s.source.actor,
        "reason": s.source.reason,
        "updated_at": s.source.occurred_at,
        "schedule": orjson.dumps(steps).decode() if steps else None,  # JSON text, as `schedule::text` reads
        "variant": s.variant,
        "split": None if s.split is None else orjson.dumps(s.selection()["split"]).decode(),
        **extra,
    }


def catalog_rows(catalog: Catalog) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Rows of `flags` and of `system_defaults`."""
    flags = []
    for key, d in catalog.definitions.items():
        assert d.source is not None
        flags.append(
            {
                "flag_key": key,
                "kind": d.kind.value,
                "description": d.description,
                "owner": d.owner,
                "grp": d.group,
                "archived": d.archived,
                "version": d.source.version,
                "event_id": uuid.UUID(d.source.event_id),
                "actor": d.source.actor,
                "reason": d.source.reason,
                "updated_at": d.source.occurred_at,
                "killed": d.killed,
                "variants": orjson.dumps([{"name": v.name, "weight": v.weight} for v in d.variants]).decode(),
                "expires_at": d.expires_at,
                **typed_columns(d),
            }
        )
    return flags, [setting_row(k, s) for k, s in catalog.system.items()]


def typed_columns(d: Definition) -> dict[str, Any]:
    """A definition's typed columns of `flags` (a boolean flag's: the column defaults)."""
    typed = d.value_type is not ValueType.BOOLEAN
    return {
        "value_type": d.value_type.value,
        "variant_values": orjson.dumps(dict(d.values)).decode(),
        "default_variant": d.default_variant if typed else None,
        "off_variant": d.off_variant if typed else None,
    }


def rule_rows(state: FlagState, table: dict[str, Rules]) -> list[dict[str, Any]]:
    """Rows of `targeting_rules` for one level's table (the catalogue's or an org's), `rules::text` as JSON text."""
    rows = []
    for key, r in table.items():
        assert r.source is not None
        value = state.heads[r.source.stream].value
        assert value is not None
        rows.append(
            {
                "stream": r.source.stream,
                "flag_key": key,
                "rules": orjson.dumps(value["rules"]).decode(),
                "version": r.source.version,
                "event_id": uuid.UUID(r.source.event_id),
                "actor": r.source.actor,
                "reason": r.source.reason,
                "updated_at": r.source.occurred_at,
            }
        )
    return rows


def override_rows(rules: TenantRules) -> list[dict[str, Any]]:
    """One org's rows of `overrides`, every level."""
    rows = [setting_row(k, s, level="org", platform="", user_id="") for k, s in rules.org.items()]
    rows += [setting_row(k, s, level="platform", platform=p, user_id="") for (p, k), s in rules.platform.items()]
    rows += [setting_row(k, s, level="user", platform="", user_id=u) for (u, k), s in rules.user.items()]
    return rows


class StateSource:
    """Documents as Postgres would give them, from a folded state; `down` makes it unavailable."""

    def __init__(self, state: FlagState) -> None:
        self.state = state
        self.down = False

    async def catalog(self) -> bytes:
        self._check()
        catalog = self.state.catalog
        return dumps(catalog_document(*catalog_rows(catalog), rule_rows(self.state, catalog.rules)))

    async def org(self, org_id: str) -> bytes:
        self._check()
        tenant = self.state.tenant(org_id)
        rows = [r for r in override_rows(tenant) if r["level"] != "user"]
        return dumps(org_document(org_id, rows, rule_rows(self.state, tenant.rules)))

    async def user(self, org_id: str, user_id: str) -> bytes:
        self._check()
        rows = override_rows(self.state.tenant(org_id))
        return dumps(user_document(org_id, user_id, [r for r in rows if r["user_id"] == user_id]))

    async def scheduled(self, org_id: str) -> list[dict[str, Any]]:
        self._check()
        rows = [r for r in override_rows(self.state.tenant(org_id)) if r["schedule"] is not None]
        return [
            {"level": r["level"], "platform": r["platform"], "user_id": r["user_id"], "flag_key": r["flag_key"],
             "schedule": orjson.loads(r["schedule"])}
            for r in sorted(rows, key=lambda r: (r["flag_key"], r["level"], r["platform"], r["user_id"]))
        ]  # fmt: skip

    def _check(self) -> None:
        if self.down:
            raise Unavailable("postgres", "connection refused")
