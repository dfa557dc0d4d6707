"""The notification-subscription routes of the command API.

`/v1/subscriptions…` are the system-wide ones (system admins manage them, system-wide auditors
read them); `/v1/orgs/{org}/subscriptions…` one org's (its org admins manage them, its auditors
read them; a system admin any org's). A key naming another org gets the one uniform 403, before
any lookup. A subscription's secrets are shown once, in the 201 that creates it, and never again.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Response

from events import (
    Envelope,
    SubscriptionChange,
    SubscriptionDeleted,
    SubscriptionPaused,
    SubscriptionResumed,
)
from events.vocabulary import SUBSCRIPTION_ID_PATTERN
from flagcore.subscriptions import SubscriptionView
from services.auth.http import Caller
from services.auth.policy import Action, Principal, authorize
from services.command.dependencies import Wired, Wiring
from services.command.errors import UnknownSubscription
from services.command.routing import OrgPath, error_responses
from services.command.subscriptions import (
    ChangeSubscriptionRequest,
    CreateSubscriptionRequest,
    SubscriptionActionRequest,
    changed,
    created,
    view,
)

__all__ = ["router"]

SubscriptionPath = Annotated[str, Path(pattern=SUBSCRIPTION_ID_PATTERN, description="The subscription's id.")]

_ERRORS = error_responses(
    {
        400: "Malformed JSON.",
        401: "No usable API key.",
        403: "This key may not manage (or read) that org's subscriptions.",
        404: "No such subscription (`unknown_subscription`).",
        409: "Version conflict, or the subscription is deleted.",
        413: "Body too large.",
        415: "Body is not application/json.",
        422: "Invalid request; `field` names the culprit.",
        503: "PostgreSQL unavailable, or no FLAGS_SUBSCRIPTION_KEY on this instance.",
    }
)

router = APIRouter(prefix="/v1", tags=["subscriptions"], responses=_ERRORS)


# --- the use cases, for one scope (org None: system-wide) ------------------------------------


async def _create(body: CreateSubscriptionRequest, org: str | None, caller: Principal, wiring: Wiring) -> Any:
    authorize(caller, Action.MANAGE_SUBSCRIPTIONS, org_id=org)
    change, secret = created(body, org_id=org, sealer=wiring.subscription_sealer())
    store = wiring.subscription_store()
    envelope = await store.append(change, expected_version=0, actor=caller.actor, reason=body.reason,
                                  now=wiring.clock())  # fmt: skip
    found = await _found(wiring, org, change.subscription_id)
    shown = {"secret": secret} if secret is not None else {}
    return {**view(found), **shown, "changed": True, "event_id": str(envelope.event_id)}


async def _list(org: str | None, caller: Principal, wiring: Wiring) -> dict[str, Any]:
    authorize(caller, Action.READ_SUBSCRIPTIONS, org_id=org)
    return {"org_id": org, "subscriptions": [view(s) for s in await wiring.subscription_store().list(org_id=org)]}


async def _get(org: str | None, sid: str, caller: Principal, wiring: Wiring) -> dict[str, Any]:
    authorize(caller, Action.READ_SUBSCRIPTIONS, org_id=org)
    return view(await _found(wiring, org, sid))


async def _change(
    org: str | None, sid: str, body: ChangeSubscriptionRequest, caller: Principal, wiring: Wiring, response: Response
) -> dict[str, Any]:
    authorize(caller, Action.MANAGE_SUBSCRIPTIONS, org_id=org)
    current = await _found(wiring, org, sid)
    return await _write(wiring, caller, current, changed(current, body), body.reason, body.expected_version, response)


async def _act(
    org: str | None,
    sid: str,
    body: SubscriptionActionRequest,
    caller: Principal,
    wiring: Wiring,
    response: Response,
    kind: type[SubscriptionPaused | SubscriptionResumed | SubscriptionDeleted],
) -> dict[str, Any]:
    authorize(caller, Action.MANAGE_SUBSCRIPTIONS, org_id=org)
    current = await _found(wiring, org, sid)
    noop = (kind is SubscriptionPaused and current.paused) or (kind is SubscriptionResumed and not current.paused)
    change = None if noop else kind(subscription_id=sid, org_id=org)
    return await _write(wiring, caller, current, change, body.reason, body.expected_version, response)


async def _write(
    wiring: Wiring,
    caller: Principal,
    current: SubscriptionView,
    change: SubscriptionChange | None,
    reason: str,
    expected_version: int | None,
    response: Response,
) -> dict[str, Any]:
    if change is None:
        response.status_code = 200
        return {**view(current), "changed": False}
    envelope: Envelope = await wiring.subscription_store().append(
        change, expected_version=expected_version, actor=caller.actor, reason=reason, now=wiring.clock()
    )
    response.status_code = 201
    after = await wiring.subscription_store().get(current.org_id, current.id)
    shown = view(after) if after is not None else {**view(current), "deleted": True, "version": envelope.version}
    return {**shown, "changed": True, "event_id": str(envelope.event_id)}


async def _found(wiring: Wiring, org: str | None, sid: str) -> SubscriptionView:
    found = await wiring.subscription_store().get(org, sid)
    if found is None:
        raise UnknownSubscription(sid)
    return found


# --- the routes: system-wide ------------------------------------------------------------------


@router.post("/subscriptions", status_code=201, summary="Create a system-wide subscription (secret shown once)")
async def create_system_subscription(body: CreateSubscriptionRequest, caller: Caller, wiring: Wired) -> Any:
    return await _create(body, None, caller, wiring)


@router.get("/subscriptions", summary="List the system-wide subscriptions (never their secrets)")
async def list_system_subscriptions(caller: Caller, wiring: Wired) -> dict[str, Any]:
    return await _list(None, caller, wiring)


@router.get("/subscriptions/{subscription_id}", summary="One system-wide subscription")
async def get_system_subscription(subscription_id: SubscriptionPath, caller: Caller, wiring: Wired) -> dict[str, Any]:
    return await _get(None, subscription_id, caller, wiring)


@router.patch("/subscriptions/{subscription_id}", summary="Change a system-wide subscription's name or filters")
async def change_system_subscription(
    subscription_id: SubscriptionPath,
    body: ChangeSubscriptionRequest,
    caller: Caller,
    wiring: Wired,
    response: Response,
) -> dict[str, Any]:
    return await _change(None, subscription_id, body, caller, wiring, response)


@router.post("/subscriptions/{subscription_id}/pause", summary="Pause a system-wide subscription")
async def pause_system_subscription(
    subscription_id: SubscriptionPath,
    body: SubscriptionActionRequest,
    caller: Caller,
    wiring: Wired,
    response: Response,
) -> dict[str, Any]:
    return await _act(None, subscription_id, body, caller, wiring, response, SubscriptionPaused)


@router.post("/subscriptions/{subscription_id}/resume", summary="Resume a system-wide subscription")
async def resume_system_subscription(
    subscription_id: SubscriptionPath,
    body: SubscriptionActionRequest,
    caller: Caller,
    wiring: Wired,
    response: Response,
) -> dict[str, Any]:
    return await _act(None, subscription_id, body, caller, wiring, response, SubscriptionResumed)


@router.delete("/subscriptions/{subscription_id}", summary="Delete a system-wide subscription")
async def delete_system_subscription(
    subscription_id: SubscriptionPath,
    body: SubscriptionActionRequest,
    caller: Caller,
    wiring: Wired,
    response: Response,
) -> dict[str, Any]:
    return await _act(None, subscription_id, body, caller, wiring, response, SubscriptionDeleted)


# --- the routes: one org's --------------------------------------------------------------------


@router.post("/orgs/{org}/subscriptions", status_code=201, summary="Create an org's subscription (secret shown once)")
async def create_org_subscription(org: OrgPath, body: CreateSubscriptionRequest, caller: Caller, wiring: Wired) -> Any:
    return await _create(body, org, caller, wiring)


@router.get("/orgs/{org}/subscriptions", summary="List an org's subscriptions (never their secrets)")
async def list_org_subscriptions(org: OrgPath, caller: Caller, wiring: Wired) -> dict[str, Any]:
    return await _list(org, caller, wiring)


@router.get("/orgs/{org}/subscriptions/{subscription_id}", summary="One of an org's subscriptions")
async def get_org_subscription(
    org: OrgPath, subscription_id: SubscriptionPath, caller: Caller, wiring: Wired
) -> dict[str, Any]:
    return await _get(org, subscription_id, caller, wiring)


@router.patch("/orgs/{org}/subscriptions/{subscription_id}", summary="Change an org's subscription")
async def change_org_subscription(
    org: OrgPath,
    subscription_id: SubscriptionPath,
    body: ChangeSubscriptionRequest,
    caller: Caller,
    wiring: Wired,
    response: Response,
) -> dict[str, Any]:
    return await _change(org, subscription_id, body, caller, wiring, response)


@router.post("/orgs/{org}/subscriptions/{subscription_id}/pause", summary="Pause an org's subscription")
async def pause_org_subscription(
    org: OrgPath,
    subscription_id: SubscriptionPath,
    body: SubscriptionActionRequest,
    caller: Caller,
    wiring: Wired,
    response: Response,
) -> dict[str, Any]:
    return await _act(org, subscription_id, body, caller, wiring, response, SubscriptionPaused)


@router.post("/orgs/{org}/subscriptions/{subscription_id}/resume", summary="Resume an org's subscription")
async def resume_org_subscription(
    org: OrgPath,
    subscription_id: SubscriptionPath,
    body: SubscriptionActionRequest,
    caller: Caller,
    wiring: Wired,
    response: Response,
) -> dict[str, Any]:
    return await _act(org, subscription_id, body, caller, wiring, response, SubscriptionResumed)


@router.delete("/orgs/{org}/subscriptions/{subscription_id}", summary="Delete an org's subscription")
async def delete_org_subscription(
    org: OrgPath,
    subscription_id: SubscriptionPath,
    body: SubscriptionActionRequest,
    caller: Caller,
    wiring: Wired,
    response: Response,
) -> dict[str, Any]:
    return await _act(org, subscription_id, body, caller, wiring, response, SubscriptionDeleted)
