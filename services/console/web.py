"""What every console route shares: the templates, the signed-in session, CSRF, and safe redirects.

The session cookie holds only a random id (HttpOnly, SameSite=Strict); the
CSRF token lives in the session and must come back, in a form field or the
`X-CSRF-Token` header, with every state-changing request, whose `Origin` (when
the browser sends one) must also be this console's own.
"""

from __future__ import annotations

import hmac
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import Response
from starlette.templating import Jinja2Templates

from services.console.access import Capabilities
from services.console.changes import describe, variants_text
from services.console.dependencies import wired
from services.console.ports import Api, Session
from services.console.typed import ROWS_TO_ADD, pretty, serving, split_text, value_label, value_text

__all__ = ["COOKIE", "CsrfRejected", "SignInRequired", "current", "render", "safe_return", "templates"]

COOKIE = "fs_session"
SIGNIN_COOKIE = "fs_signin"  # the sign-in form's CSRF token, before any session exists
HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")
templates.env.globals["describe"] = describe  # a setting as a person reads it, in every template
templates.env.globals["variants_text"] = variants_text
# a typed flag's variants, what a level serves, and an answer's value
templates.env.globals |= {"pretty": pretty, "value_text": value_text, "split_text": split_text,
                          "value_label": value_label, "serving": serving, "rows_to_add": ROWS_TO_ADD}


class SignInRequired(Exception):
    """No session, or it expired: the route answers with the sign-in page."""

    def __init__(self, message: str = "Please sign in.") -> None:
        super().__init__(message)
        self.message = message


class CsrfRejected(Exception):
    """A state-changing request without this session's CSRF token, or from another origin."""


async def current(request: Request) -> Session:
    """The signed-in session (its idle timer restarted), or `SignInRequired`."""
    cached = getattr(request.state, "session", None)
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    session_id = request.cookies.get(COOKIE)
    if not session_id:
        raise SignInRequired()
    session = await wired(request).session_store().get(session_id)
    if session is None:
        raise SignInRequired("Your session ended (signed out, or idle too long). Please sign in again.")
    request.state.session = session
    return session


def api(request: Request, session: Session) -> Api:
    """The APIs, called with the signed-in user's own key."""
    return wired(request).api(session.api_key)


def same_origin(request: Request) -> bool:
    """True unless the browser says the request comes from another origin."""
    origin = request.headers.get("origin")
    if origin is None:
        return True
    here = urlsplit(str(request.base_url))
    there = urlsplit(origin)
    return (there.scheme, there.netloc) == (here.scheme, here.netloc)


def check_csrf(request: Request, submitted: str | None, expected: str) -> None:
    token = submitted or request.headers.get("x-csrf-token") or ""
    if not same_origin(request) or not hmac.compare_digest(token.encode(), expected.encode()):
        raise CsrfRejected()


async def form_of(request: Request) -> dict[str, str]:
    """The posted form as plain strings (files are not accepted anywhere)."""
    form = await request.form()
    return {k: v for k, v in form.items() if isinstance(v, str)}


async def changing(request: Request) -> tuple[Session, dict[str, str]]:
    """A state-changing request: the session and its form, after the CSRF check."""
    session = await current(request)
    form = await form_of(request)
    check_csrf(request, form.get("csrf"), session.csrf)
    return session, form


def safe_return(target: str | None, default: str = "/") -> str:
    """A local path to go back to; anything that could leave the console becomes `default`."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return default
    return target


def render(request: Request, name: str, context: dict[str, Any] | None = None, *, status: int = 200) -> Response:
    session: Session | None = getattr(request.state, "session", None)
    base: dict[str, Any] = {"session": session, "can": Capabilities.of(session.principal) if session else None,
                            "path": request.url.path}
    return templates.TemplateResponse(request, name, {**base, **(context or {})}, status_code=status)
