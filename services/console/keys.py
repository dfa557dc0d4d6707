"""API keys in the console: list them, create one (shown once, on that page only), revoke one.

The same routes as `flagctl keys`; who may hand out which role is the API's rule
(`authorize_grant`), asked here first so a refused form sends nothing.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from events import KeyRole
from services.auth.policy import authorize_grant
from services.console.access import Action, require, scoped_org
from services.console.forms import InvalidInput, org_id, reason, text
from services.console.web import api, changing, current, render

KEY_ID = re.compile(r"^[0-9a-f]{16}$")


async def keys_page(request: Request) -> Response:
    session = await current(request)
    org = scoped_org(session.principal, org_id(request.query_params.get("org")))
    require(session.principal, Action.MANAGE_KEYS, org)
    listed = await api(request, session).keys(org)
    return render(request, "keys.html", {"keys": listed, "org": org or "", "roles": [r.value for r in KeyRole],
                                         "created": None})


def _new_key(form: Mapping[str, str]) -> dict[str, object]:
    name = text(form, "name")
    if not name or len(name) > 100:
        raise InvalidInput("name", "who or what uses the key (1–100 characters)")
    try:
        role = KeyRole(text(form, "role"))
    except ValueError:
        raise InvalidInput("role", f"must be one of {', '.join(KeyRole)}") from None
    return {"name": name, "role": role.value, "org_id": org_id(text(form, "org")), "reason": reason(form)}


async def create_key(request: Request) -> Response:
    session, form = await changing(request)
    body = _new_key(form)
    org = body["org_id"]
    assert org is None or isinstance(org, str)
    authorize_grant(session.principal, KeyRole(str(body["role"])), org)  # Forbidden: the uniform refusal page
    created = await api(request, session).change("POST", "/v1/keys", body)
    listed = await api(request, session).keys(org or session.org_id)
    return render(request, "keys.html", {"keys": listed, "org": org or "", "roles": [r.value for r in KeyRole],
                                         "created": created})


async def revoke_key(request: Request) -> Response:
    session, form = await changing(request)
    key_id = request.path_params["key_id"]
    if not KEY_ID.match(key_id):
        raise InvalidInput("key_id", "16 hexadecimal digits")
    require(session.principal, Action.MANAGE_KEYS, session.org_id)
    await api(request, session).change("POST", f"/v1/keys/{key_id}/revoke", {"reason": reason(form)})
    org = org_id(form.get("org"))
    listed = await api(request, session).keys(scoped_org(session.principal, org))
    return render(request, "keys.html", {"keys": listed, "org": org or "", "roles": [r.value for r in KeyRole],
                                         "created": None, "revoked": key_id})


routes = [
    Route("/keys", keys_page, methods=["GET"]),
    Route("/keys", create_key, methods=["POST"]),
    Route("/keys/{key_id}/revoke", revoke_key, methods=["POST"]),
]
