"""The key-management routes of the command API.

A new key is shown exactly once, in the 201 answer to its creation. An
org-scoped caller sees only its own org's keys; a key of another org answers
the same 404 as a key that does not exist.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from events import Envelope
from events.fields import OrgId, Reason
from events.vocabulary import ORG_ID_PATTERN
from services.auth.http import Caller
from services.auth.keys import generate
from services.auth.policy import Action, Forbidden, Principal, Role, authorize, authorize_grant, authorize_role
from services.command.dependencies import Wired
from services.command.errors import InvalidCommand, UnknownKey
from services.command.ports import KeyInfo, KeyStore
from services.command.routing import error_responses

KeyIdPath = Annotated[str, Path(pattern=r"^[0-9a-f]{16}$", description="The key's id (not the key).")]


class CreateKeyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=100, pattern=r"^[^\x00-\x1f\x7f]+$", description="Who or what uses it.")
    role: Role
    org_id: OrgId | None = Field(default=None, description="The org it acts for; omit for a system-wide key.")
    expires_at: AwareDatetime | None = Field(default=None, description="When it stops working (RFC 3339).")
    reason: Reason


class RevokeKeyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: Reason


class KeyExpiryRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    expires_at: AwareDatetime | None
    reason: Reason


# Every failure answers the command API's error shape; without these, OpenAPI would
# document FastAPI's default 422 body, which this API never sends.
_ERRORS = error_responses(
    {
        400: "Malformed JSON.",
        401: "No usable API key.",
        403: "This key may not manage that key.",
        404: "No such key (`unknown_key`), or a key of another org.",
        413: "Body too large.",
        415: "Body is not application/json.",
        422: "Invalid request; `field` names the culprit.",
        429: "Too many failed authentications from this client.",
        503: "PostgreSQL unavailable.",
    }
)

router = APIRouter(prefix="/v1/keys", tags=["keys"], responses=_ERRORS)


def _view(info: KeyInfo, envelope: Envelope | None = None) -> dict[str, Any]:
    view = {
        "id": info.key_id,
        "name": info.name,
        "role": info.role.value,
        "org_id": info.org_id,
        "created_at": info.created_at.isoformat(),
        "created_by": info.created_by,
        "expires_at": info.expires_at.isoformat() if info.expires_at else None,
        "revoked_at": info.revoked_at.isoformat() if info.revoked_at else None,
        "last_used_at": info.last_used_at.isoformat() if info.last_used_at else None,
    }
    if envelope is not None:
        view["event_id"] = str(envelope.event_id)
    return view


async def _reachable(store: KeyStore, caller: Principal, key_id: str) -> KeyInfo:
    authorize_role(caller, Action.MANAGE_KEYS)  # a role that manages no keys learns nothing of any
    info = await store.get(key_id)
    if info is None:
        raise UnknownKey(key_id)
    try:
        authorize_grant(caller, info.role, info.org_id)
    except Forbidden:
        if caller.org_id is not None and info.org_id != caller.org_id:
            raise UnknownKey(key_id) from None  # another tenant's key: indistinguishable from none
        raise
    return info


@router.post("", status_code=201, summary="Create a key (shown once)")
async def create_key(body: CreateKeyRequest, caller: Caller, wiring: Wired) -> dict[str, Any]:
    authorize_grant(caller, body.role, body.org_id)
    if body.expires_at is not None and body.expires_at <= datetime.now(UTC):
        raise InvalidCommand("expires_at must be in the future", field="expires_at")
    new_key = generate()
    info, envelope = await wiring.key_store().create(
        new_key, name=body.name, role=body.role, org_id=body.org_id, expires_at=body.expires_at,
        actor=caller.actor, reason=body.reason, now=datetime.now(UTC),
    )
    return {**_view(info, envelope), "key": new_key.token}


@router.get("", summary="List keys (never the keys themselves)")
async def list_keys(
    caller: Caller,
    wiring: Wired,
    org: Annotated[str | None, Query(pattern=ORG_ID_PATTERN, description="Only this org's keys.")] = None,
) -> dict[str, Any]:
    if caller.org_id is not None:
        org = org or caller.org_id
    authorize(caller, Action.MANAGE_KEYS, org_id=org)
    return {"keys": [_view(k) for k in await wiring.key_store().list(org_id=org)]}


@router.post("/{key_id}/revoke", summary="Revoke a key (effective within one second everywhere)")
async def revoke_key(key_id: KeyIdPath, body: RevokeKeyRequest, caller: Caller, wiring: Wired) -> dict[str, Any]:
    store = wiring.key_store()
    await _reachable(store, caller, key_id)
    info, envelope = await store.revoke(key_id, actor=caller.actor, reason=body.reason, now=datetime.now(UTC))
    return {**_view(info, envelope), "changed": envelope is not None}


@router.put("/{key_id}/expiry", summary="Set or remove a key's expiry")
async def set_key_expiry(
    key_id: KeyIdPath, body: KeyExpiryRequest, caller: Caller, wiring: Wired
) -> dict[str, Any]:
    store = wiring.key_store()
    await _reachable(store, caller, key_id)
    info, envelope = await store.set_expiry(
        key_id, body.expires_at, actor=caller.actor, reason=body.reason, now=datetime.now(UTC)
    )
    return {**_view(info, envelope), "changed": envelope is not None}
