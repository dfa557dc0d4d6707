"""`GET /v1/whoami`: the caller's own key — role, org scope, name — so a client (the admin console) can
tailor what it shows without guessing from refusals. Any valid key may ask about itself; nothing else."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from services.auth.http import Caller
from services.command.schemas import ErrorBody

router = APIRouter(prefix="/v1", tags=["keys"], responses={401: {"model": ErrorBody, "description": "No usable key."}})


class WhoAmI(BaseModel):
    key_id: str = Field(description="The key's id (not the key).")
    name: str = Field(description="The key's name: what the log records as the actor's name.")
    role: str
    org_id: str | None = Field(description="The org it acts for; null for a system-wide key.")
    expires_at: str | None = Field(description="RFC 3339, or null when it does not expire.")


@router.get("/whoami", response_model=WhoAmI, summary="The calling key's role and scope")
async def whoami(caller: Caller) -> dict[str, Any]:
    return {
        "key_id": caller.key_id,
        "name": caller.name,
        "role": caller.role.value,
        "org_id": caller.org_id,
        "expires_at": caller.expires_at.isoformat() if caller.expires_at else None,
    }
