"""Notifications in the console: an org's (or the system's) subscriptions, one's delivery log and dead letters,
and "retry now".

The subscriptions come from the command API, the delivery log and dead letters from the notifier (it owns
them), each with the user's own key; the roles are the APIs' (`read-subscriptions` to look,
`manage-subscriptions` to retry), asked here first, and an org admin sees its own org's only. When the
notifier cannot be reached the subscription is still shown, its log marked unavailable.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from events.vocabulary import SUBSCRIPTION_ID_PATTERN, AlertKind
from services.console.access import Action, may, require, scoped_org
from services.console.forms import InvalidInput, org_id
from services.console.ports import Api, ApiError, Session
from services.console.web import api, changing, current, render

__all__ = ["routes"]

SUBSCRIPTION_ID = re.compile(SUBSCRIPTION_ID_PATTERN)
ATTEMPTS_SHOWN = 50
DEAD_LETTERS_SHOWN = 100
ALERTS = frozenset(kind.value for kind in AlertKind)


def shown(subscription: dict[str, Any]) -> dict[str, Any]:
    """A subscription as the pages list it: the alerts it opted in to apart from the event types it hears."""
    types = subscription.get("event_types") or []
    return {
        **subscription,
        "alerts": [t for t in types if t in ALERTS],
        "changes": [t for t in types if t not in ALERTS],
        "alerts_only": bool(types) and all(t in ALERTS for t in types),
        "state": "paused" if subscription.get("paused") else "active",
    }


def _subscription_id(request: Request) -> str:
    sid = str(request.path_params["subscription_id"])
    if not SUBSCRIPTION_ID.match(sid):
        raise InvalidInput("subscription_id", "lower-case letters, digits, _ or - (at most 64)")
    return sid


async def subscriptions_page(request: Request) -> Response:
    session = await current(request)
    org = scoped_org(session.principal, org_id(request.query_params.get("org")))
    require(session.principal, Action.READ_SUBSCRIPTIONS, org)
    listed = await api(request, session).subscriptions(org)
    return render(request, "subscriptions.html", {"subscriptions": [shown(s) for s in listed], "org": org or ""})


async def subscription_page(request: Request) -> Response:
    session = await current(request)
    org = scoped_org(session.principal, org_id(request.query_params.get("org")))
    sid = _subscription_id(request)
    require(session.principal, Action.READ_SUBSCRIPTIONS, org)
    return await _detail(request, session, org, sid)


async def retry_now(request: Request) -> Response:
    session, form = await changing(request)
    org = scoped_org(session.principal, org_id(form.get("org")))
    sid = _subscription_id(request)
    require(session.principal, Action.MANAGE_SUBSCRIPTIONS, org)
    answer = await api(request, session).retry_dead_letters(org, sid)
    return await _detail(request, session, org, sid, retried=[str(i) for i in answer.get("retried", [])])


async def _detail(request: Request, session: Session, org: str | None, sid: str, *,
                  retried: list[str] | None = None) -> Response:  # fmt: skip
    client = api(request, session)
    subscription = await client.subscription(org, sid)  # 404 from the command API: the not-found page
    attempts, dead, unavailable = await _delivery_log(client, org, sid)
    return render(request, "subscription.html", {
        "sub": shown(subscription), "org": org or "", "attempts": attempts, "dead_letters": dead,
        "pending": sum(1 for d in dead if d.get("retried_at") is None), "unavailable": unavailable,
        "can_retry": may(session.principal, Action.MANAGE_SUBSCRIPTIONS, org), "retried": retried,
    })  # fmt: skip


async def _delivery_log(client: Api, org: str | None, sid: str
                        ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], str | None]:  # fmt: skip
    """The attempts and dead letters, or why they cannot be shown now (the notifier away or still reading)."""
    try:
        attempts, dead = await asyncio.gather(
            client.deliveries(org, sid, limit=ATTEMPTS_SHOWN), client.dead_letters(org, sid, limit=DEAD_LETTERS_SHOWN)
        )
    except ApiError as exc:
        if exc.status < 500 and exc.status != 404:
            raise
        return [], [], exc.detail
    return attempts, dead, None


routes = [
    Route("/subscriptions", subscriptions_page, methods=["GET"]),
    Route("/subscriptions/{subscription_id}", subscription_page, methods=["GET"]),
    Route("/subscriptions/{subscription_id}/retry", retry_now, methods=["POST"]),
]
