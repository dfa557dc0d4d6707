"""`GET /v1/orgs/{org_id}/bootstrap`: everything an in-process SDK needs to start following the topic.

One REPEATABLE READ transaction under the org's RLS reads the stream heads of the
catalogue and of the org, each stream's value and deciding event (its last history
row), and the projector's stored offsets. The projector commits read models, heads,
history and offsets in one transaction, so the snapshot is exactly the fold of the
topic up to those offsets: an SDK that folds from there misses nothing and applies
nothing twice. The state is in `flagcore.history`'s snapshot format (one document
per scope), which `flagcore.history.restore` turns back into a `FlagState`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Annotated, Any

import asyncpg
import orjson
from fastapi import FastAPI, Path
from fastapi.responses import Response
from pydantic import BaseModel, Field

from events.vocabulary import ORG_ID_PATTERN
from flagcore.history import SYSTEM_SCOPE, scope_of_stream
from services.auth.http import Caller
from services.auth.policy import Action, authorize
from services.infra.postgres import set_tenant
from services.infra.settings import Settings
from services.query import validation
from services.query.adapters import translated
from services.query.documents import dumps
from services.query.errors import Unavailable

# RLS shows system rows and the org's. One pass over the history: each stream's last row.
HEADS_SQL = "SELECT stream, version, hash FROM stream_heads WHERE org_id IS NULL OR org_id = $1"
LAST_VALUES_SQL = """
    SELECT DISTINCT ON (stream) stream, version, new, event_id, actor_name, reason, occurred_at
    FROM flag_history WHERE org_id IS NULL OR org_id = $1
    ORDER BY stream, version DESC
"""
OFFSETS_SQL = "SELECT partition, next_offset FROM projector_offsets WHERE consumer_group = $1 AND topic = $2"


class BootstrapOut(BaseModel):
    """Documents the answer (the route returns the bytes it built)."""

    org_id: str
    topic: str = Field(description="The flag-change topic to follow from `offsets`.")
    offsets: dict[str, int] = Field(description="Partition → the next offset to fold; a partition not named: 0.")
    scopes: dict[str, dict[str, Any]] = Field(
        description='`flagcore.history` snapshot documents: `""` (definitions, system defaults) and the org.'
    )


OrgPath = Annotated[str, Path(description="Organisation id.", json_schema_extra={"pattern": ORG_ID_PATTERN})]


async def read_bootstrap(pool: asyncpg.Pool, settings: Settings, org_id: str) -> dict[str, Any]:
    """The org's snapshot document (see the module docstring)."""
    async with translated(), pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        await set_tenant(conn, org_id)
        heads = await conn.fetch(HEADS_SQL, org_id)
        last = {r["stream"]: r for r in await conn.fetch(LAST_VALUES_SQL, org_id)}
        offsets = await conn.fetch(OFFSETS_SQL, settings.projector_group, settings.topic)
    return {
        "org_id": org_id,
        "topic": settings.topic,
        "offsets": {str(r["partition"]): r["next_offset"] for r in offsets},
        "scopes": {scope: scope_document(scope, heads, last) for scope in (SYSTEM_SCOPE, org_id)},
    }


def scope_document(
    scope: str, heads: Iterable[Mapping[str, Any]], last: Mapping[str, Mapping[str, Any]]
) -> dict[str, Any]:
    """One scope's heads and last history rows → `flagcore.history.snapshot`'s document."""
    doc: dict[str, Any] = {"heads": []}
    placed: dict[str, list[Any]] = {"definitions": [], "system": [], "org": [], "platform": [], "user": []}
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
        if scope == SYSTEM_SCOPE:  # flag/{key} or flag/{key}/system
            placed["system" if parts[-1] == "system" and len(parts) == 3 else "definitions"].append([parts[1], ref])
        elif parts[2] == "flag":  # org/{org}/flag/{key}
            placed["org"].append([parts[3], ref])
        else:  # org/{org}/platform/{p}/flag/{key}, org/{org}/user/{u}/flag/{key}
            placed[parts[2]].append([parts[3], parts[5], ref])
    if scope == SYSTEM_SCOPE:
        return doc | {"definitions": placed["definitions"], "system": placed["system"]}
    return doc | {"org": placed["org"], "platform": placed["platform"], "user": placed["user"]}


def install_bootstrap_route(
    app: FastAPI,
    settings: Settings,
    pool: Callable[[], asyncpg.Pool | None],
    *,
    errors: Mapping[int | str, dict[str, Any]],
) -> None:
    """Register the route; `pool` gives the query role's pool once the lifespan opened it, `errors` the
    service's documented error answers (422, 503)."""

    @app.get(
        "/v1/orgs/{org_id}/bootstrap",
        response_model=BootstrapOut,
        summary="Snapshot for an in-process SDK: the org's state and the topic offsets it covers",
        responses=dict(errors),
    )
    async def bootstrap(caller: Caller, org_id: OrgPath) -> Response:
        org = validation.org_id(org_id)
        authorize(caller, Action.EVALUATE, org_id=org)
        connected = pool()
        if connected is None:
            raise Unavailable("postgres", "the service is starting")
        document = await read_bootstrap(connected, settings, org)
        return Response(dumps(document), media_type="application/json")
