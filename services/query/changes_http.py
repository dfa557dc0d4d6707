"""OFREP's change stream on the product's own server (`services.httpserver`): `GET /ofrep/v1/changes` as `Streamed`.

`services.query.site` sends the route here rather than through the ASGI bridge,
which collects an answer whole. The same authentication (`AuthGate`: throttle,
denial log), use case (`changes_api.open_stream`) and error bodies as the FastAPI
route, with the security headers every answer of the query service carries.
"""

from __future__ import annotations

from fastapi import FastAPI
from starlette.datastructures import QueryParams
from starlette.responses import Response

from services.auth.authenticator import KeyStoreUnavailable, Unauthenticated
from services.auth.http import TooManyFailures, gate_of
from services.auth.policy import Forbidden, Principal
from services.http.errors import problem, rate_limited
from services.httpserver.message import Reply, Request, Streamed
from services.query.changes_api import STREAM_HEADERS, open_stream, still_allowed, too_many
from services.query.changes_stream import TooManyStreams
from services.query.dependencies import wiring_of
from services.query.errors import QueryError, Unavailable
from services.query.refusals import refusal

__all__ = ["ChangeStreams"]

Headers = list[tuple[str, str]]
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="flagstream"'}


class ChangeStreams:
    """Open a change stream for a request, or refuse it as the app would."""

    __slots__ = ("_security", "app")

    def __init__(self, app: FastAPI, security: Headers) -> None:
        self.app = app
        self._security = security

    async def open(self, request: Request) -> Reply | Streamed:
        gate = gate_of(self.app)
        authorization = request.header(b"authorization")
        client, path = request.client[0], request.path
        principal: Principal | None = None
        try:
            if gate is None:  # not started yet: fail closed, as `services.auth.http` does
                raise Unauthenticated("authentication is not available yet; retry shortly")
            principal = await gate.check(authorization, client, request.method, path)
            org = QueryParams(request.query_string.decode("latin-1")).get("org")
            opened = await open_stream(wiring_of(self.app).changes, principal, org, request.header(b"last-event-id"))
        except Unauthenticated as exc:
            return self._response(problem(401, "unauthenticated", exc.detail, headers=_CHALLENGE))
        except Forbidden as exc:
            assert gate is not None
            gate.deny("forbidden", exc.detail, principal, client, request.method, path)
            return self._response(problem(403, "forbidden", exc.detail))
        except TooManyFailures as exc:
            return self._response(rate_limited(exc.retry_after, reason="too many failed authentications"))
        except TooManyStreams as exc:
            return self._response(too_many(exc))
        except KeyStoreUnavailable as exc:
            return self._refusal(Unavailable("postgres", str(exc)))
        except QueryError as exc:
            return self._refusal(exc)
        check = still_allowed(gate, authorization, client, opened.subscription.org_id)
        return Streamed(200, [*STREAM_HEADERS, *self._security], opened.frames(check))

    def _refusal(self, exc: QueryError) -> Reply:
        status, body = refusal(exc)
        retry = [("retry-after", "1")] if status == 503 else []
        return Reply(status, [("content-type", "application/json"), *retry, *self._security], body)

    def _response(self, response: Response) -> Reply:
        raw = [(n.decode("latin-1"), v.decode("latin-1")) for n, v in response.raw_headers]
        return Reply(response.status_code, [*raw, *self._security], bytes(response.body))
