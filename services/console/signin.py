"""Sign in with an API key, sign out. The key is checked by the command API (`GET /v1/whoami`) and then
kept only in the server-side session; the browser gets a fresh random session id."""

from __future__ import annotations

import hmac

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from services.console.access import home_page
from services.console.dependencies import wired
from services.console.ports import ApiError, Session, new_token
from services.console.web import COOKIE, SIGNIN_COOKIE, changing, form_of, render, safe_return, same_origin

SIGNIN_TTL = 600


def _signin_page(request: Request, *, error: str | None = None, status: int = 200) -> Response:
    token = new_token()
    response = render(request, "signin.html", {"csrf": token, "error": error,
                                              "next": safe_return(request.query_params.get("next"), "")},
                      status=status)
    response.set_cookie(SIGNIN_COOKIE, token, max_age=SIGNIN_TTL, httponly=True, samesite="strict",
                        secure=wired(request).settings.console_secure_cookie, path="/signin")
    return response


async def signin_form(request: Request) -> Response:
    message = {"expired": "Your session ended (signed out, or idle too long). Please sign in again.",
               "revoked": "Your key is no longer accepted (revoked or expired). Sign in with a valid key."}
    return _signin_page(request, error=message.get(request.query_params.get("why", "")))


async def signin(request: Request) -> Response:
    form = await form_of(request)
    expected = request.cookies.get(SIGNIN_COOKIE, "")
    if not expected or not same_origin(request) or not hmac.compare_digest(form.get("csrf", ""), expected):
        return _signin_page(request, error="The sign-in form expired; please try again.", status=403)
    key = form.get("key", "").strip()
    if not key:
        return _signin_page(request, error="key: paste your API key", status=422)
    try:
        me = await wired(request).api(key).whoami()
    except ApiError as exc:
        if exc.status in (401, 403):
            return _signin_page(request, error="key: not accepted (unknown, revoked or expired)", status=401)
        if exc.status == 429:
            return _signin_page(request, error="Too many failed sign-ins; wait a minute and retry.", status=429)
        return _signin_page(request, error="The command service is unavailable; retry shortly.", status=503)
    sessions = wired(request).session_store()
    old = request.cookies.get(COOKIE)
    if old:
        await sessions.delete(old)  # never carry a session id across a sign-in
    session = Session(api_key=key, key_id=me["key_id"], name=me["name"], role=me["role"], org_id=me["org_id"],
                      csrf=new_token())
    session_id = await sessions.create(session)
    response = RedirectResponse(safe_return(form.get("next"), home_page(session.principal)), status_code=303)
    response.set_cookie(COOKIE, session_id, httponly=True, samesite="strict", path="/",
                        secure=wired(request).settings.console_secure_cookie)
    response.delete_cookie(SIGNIN_COOKIE, path="/signin")
    return response


async def signout(request: Request) -> Response:
    await changing(request)
    await wired(request).session_store().delete(request.cookies[COOKIE])
    response = RedirectResponse("/signin", status_code=303)
    response.delete_cookie(COOKIE, path="/")
    return response


routes = [
    Route("/signin", signin_form, methods=["GET"]),
    Route("/signin", signin, methods=["POST"]),
    Route("/signout", signout, methods=["POST"]),
]
