"""The snapshot an in-process SDK starts from (`GET /v1/orgs/{org_id}/bootstrap`), read from Postgres.

One REPEATABLE READ transaction under the org's RLS reads the stream heads of the
catalogue and of the org, each stream's value and deciding event (its last history
row), and the projector's stored offsets. The projector commits read models, heads,
history and offsets in one transaction, so the snapshot is exactly the fold of the
topic up to those offsets: an SDK that folds from there misses nothing and applies
nothing twice. The state is in `flagcore.history`'s snapshot format (one document
per scope), which `flagcore.history.restore` turns back into a `FlagState`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import asyncpg
import orjson

from flagcore.history import SYSTEM_SCOPE, scope_of_stream
from services.infra.postgres import set_tenant
from services.query.adapters import translated
from services.query.documents import dumps

# RLS shows system rows and the org's. One pass over the history: each stream's last row.
HEADS_SQL = "SELECT stream, version, hash FROM stream_heads WHERE org_id IS NULL OR org_id = $1"
LAST_VALUES_SQL = """
    SELECT DISTINCT ON (stream) stream, version, new, event_id, actor_name, reason, occurred_at
    FROM flag_history WHERE org_id IS NULL OR org_id = $1
    ORDER BY stream, version DESC
"""
OFFSETS_SQL = "SELECT partition, next_offset FROM projector_offsets WHERE consumer_group = $1 AND topic = $2"


class PostgresSnapshots:
    """The `Snapshots` port over the query role's pool: the topic and group are the projector's."""

    def __init__(self, pool: asyncpg.Pool, *, topic: str, projector_group: str) -> None:
        self._pool = pool
        self._topic = topic
        self._group = projector_group

    async def read(self, org_id: str) -> bytes:
        """The org's snapshot document (see the module docstring), serialised."""
        pool = self._pool
        async with translated(), pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
            await set_tenant(conn, org_id)
            heads = await conn.fetch(HEADS_SQL, org_id)
            last = {r["stream"]: r for r in await conn.fetch(LAST_VALUES_SQL, org_id)}
            offsets = await conn.fetch(OFFSETS_SQL, self._group, self._topic)
        return dumps({
            "org_id": org_id,
            "topic": self._topic,
            "offsets": {str(r["partition"]): r["next_offset"] for r in offsets},
            "scopes": {scope: scope_document(scope, heads, last) for scope in (SYSTEM_SCOPE, org_id)},
        })


def scope_document(
    scope: str, heads: Iterable[Mapping[str, Any]], last: Mapping[str, Mapping[str, Any]]
) -> dict[str, Any]:
    """One scope's heads and last history rows → `flagcore.history.snapshot`'s document."""
    doc: dict[str, Any] = {"heads": []}
    placed: dict[str, list[Any]] = {"definitions": [], "system": [], "org": [], "platform": [], "user": [], "rules": []}
    for h in sorted(heads, key=lambda h: h["stream"]):
        stream = h["stream"]
        r = last.get(stream)
        if scope_of_stream(stream) != scope or r is None or r["version"] != h["version"]:
            continue  # not this scope's, or (never, as both commit together) a head without its history
        value = None if r["new"] is None else orjson.loads(r["new"])
        doc["heads"].append([stream, h["version"], h["hash"], value])
        if value is None:
            continue  # a cleared override: its head stays, nothing is placed
        ref = [str(r["event_id"]), stream, r["version"], r["actor_name"], r["reason"], r["occurred_at"].isoformat()]
        parts = stream.split("/")
        if len(parts) == (4 if scope == SYSTEM_SCOPE else 5):  # flag/{key}/system/rules, org/{org}/flag/{key}/rules
            placed["rules"].append([parts[1] if scope == SYSTEM_SCOPE else parts[3], ref])
        elif scope == SYSTEM_SCOPE:  # flag/{key} or flag/{key}/system
            placed["system" if parts[-1] == "system" and len(parts) == 3 else "definitions"].append([parts[1], ref])
        elif parts[2] == "flag":  # org/{org}/flag/{key}
            placed["org"].append([parts[3], ref])
        else:  # org/{org}/platform/{p}/flag/{key}, org/{org}/user/{u}/flag/{key}
            placed[parts[2]].append([parts[3], parts[5], ref])
    rules = {"rules": placed["rules"]} if placed["rules"] else {}  # as `flagcore.history.snapshot`: only once set
    if scope == SYSTEM_SCOPE:
        return doc | {"definitions": placed["definitions"], "system": placed["system"]} | rules
    return doc | {"org": placed["org"], "platform": placed["platform"], "user": placed["user"]} | rules
