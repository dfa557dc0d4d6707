"""The evaluation hot path in front of the FastAPI app: `HotPath` decides, an adapter per server interface sends.

Measured in process on this 2-core machine (no server, no network), one OFREP
evaluation took 125 µs through FastAPI's route, 36 µs when a middleware inside
the app answered it, 30 µs in front of the app; our own work in it
(authentication from the key cache, context parsing, evaluation, orjson) is
about 17 µs. So `POST /ofrep/v1/evaluate/flags[/{key}]` and the native
`GET /v1/orgs/{org_id}/flags/{flag_key}` are answered before the app, with the
same authentication (`AuthGate`: key cache, failed-auth throttle, denial log),
authorisation and use cases (`services.query.ofrep`, `QueryService`, counted by `services.query.usage`), the same
answers and error bodies, the same security headers (asked once of
`SecurityHeaders`) and the same generic 500. An OFREP answer for a user without
an override of their own, whose documents the in-process cache holds, comes from a
plan (`services.query.plans`: finished answer bytes per org and flag); otherwise it
is served again from `services.query.answers` while the documents and schedules it
came from are unchanged, or computed by the use cases. A native answer is kept and
served again the same way (measured in process: 55 µs computed, 15 µs kept).
Everything else goes to the app, which documents these routes in OpenAPI
and serves them itself to a browser (a request with `Origin`, when CORS is
configured: the app's CORS layer decides) or when the app is served alone (`bench.query_asgi`).

`FastPath` is the ASGI adapter (in-process tests, any ASGI server);
`services.query.site` is the one `python -m services.query` serves, on the
product's own HTTP server (`services.httpserver`), which costs far less per
request than any ASGI server.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

from fastapi import FastAPI
from starlette.datastructures import QueryParams
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from services.auth.authenticator import KeyStoreUnavailable, Unauthenticated
from services.auth.http import TooManyFailures, gate_of
from services.auth.policy import Action, Forbidden, Principal, allowed, authorize, authorize_role
from services.http import SecurityHeaders
from services.http.errors import UNAVAILABLE_HEADERS, problem, rate_limited
from services.http.unhandled import INTERNAL_ERROR_DETAIL
from services.httpserver.message import Reply
from services.query import contexts, ofrep, rendering, validation
from services.query.answers import AnswerCache, Recorder
from services.query.dependencies import Wiring, wiring_of
from services.query.errors import QueryError, Unavailable
from services.query.plans import Plans
from services.query.refusals import refusal
from services.query.service import QueryService

__all__ = [
    "BULK",
    "FastPath",
    "HotPath",
    "HotRequest",
    "endpoint_of",
    "has_origin",
    "is_hot",
    "is_ofrep",
    "native_target",
    "read_body",
    "security_headers",
]

log = logging.getLogger("flagstream.http")

BULK = "/ofrep/v1/evaluate/flags"
SINGLE = BULK + "/"
NATIVE = "/v1/orgs/"
Headers = list[tuple[str, str]]
_JSON = ("content-type", "application/json")
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="flagstream"'}
_RETRY_AFTER = [(name.lower(), value) for name, value in UNAVAILABLE_HEADERS.items()]


def is_ofrep(method: str, path: str) -> bool:
    """`POST` to one of OFREP's two evaluation paths (a key holds no `/`)."""
    return method == "POST" and (
        path == BULK or (path.startswith(SINGLE) and len(path) > len(SINGLE) and "/" not in path[len(SINGLE) :])
    )


def native_target(method: str, path: str) -> tuple[str, str] | None:
    """(org, flag) of `GET /v1/orgs/{org_id}/flags/{flag_key}`, the native API's hot route; else None."""
    if method != "GET" or not path.startswith(NATIVE):
        return None
    parts = path[len(NATIVE) :].split("/")
    if len(parts) != 3 or parts[1] != "flags" or not parts[0] or not parts[2]:
        return None
    return parts[0], parts[2]


def is_hot(method: str, path: str) -> bool:
    """A request `HotPath` answers itself."""
    return is_ofrep(method, path) or native_target(method, path) is not None


def endpoint_of(method: str, path: str) -> str:
    """A hot request's endpoint, as `services.query.metrics` labels it."""
    return "native" if method == "GET" else "ofrep_bulk" if path == BULK else "ofrep_single"


@dataclass(frozen=True, slots=True)
class HotRequest:
    """What the hot path reads of a request, whichever server interface brought it."""

    method: str
    path: str  # percent-decoded, as ASGI's `path`
    query_string: str
    client: str  # the peer's host: what the failed-authentication throttle counts
    authorization: str | None
    if_none_match: str | None

    @classmethod
    def of_asgi(cls, scope: Scope) -> HotRequest:
        headers = {name: value for name, value in scope["headers"] if name in _HOT_HEADERS}
        authorization, if_none_match = (headers.get(n) for n in _HOT_HEADERS)
        client = scope.get("client")
        return cls(
            scope["method"],
            scope["path"],
            scope.get("query_string", b"").decode("latin-1"),
            client[0] if client else "unknown",
            None if authorization is None else authorization.decode("latin-1"),
            None if if_none_match is None else if_none_match.decode("latin-1"),
        )


_HOT_HEADERS = (b"authorization", b"if-none-match")


class HotPath:
    """Authenticate, evaluate (OFREP or native), and turn every outcome into a `Reply` with the security headers."""

    __slots__ = ("_answers", "_plans", "_security", "_wiring", "app", "metrics")

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self._wiring: Wiring = wiring_of(app)  # the app's use cases, connected when its lifespan starts
        self.metrics = self._wiring.metrics
        self._security = security_headers()
        self._answers: AnswerCache | None = None  # made on first use: the documents exist once the app has started
        self._plans: Plans | None = None

    async def reply(
        self, request: HotRequest, body: Callable[[], Awaitable[bytes]], started: float | None = None
    ) -> Reply:
        """`request` gives the path and headers (and the client, for the throttle); `body` reads the body.

        `started` (`time.perf_counter()`) is when the request was read: its answer's latency is counted from it.
        """
        started = time.perf_counter() if started is None else started
        try:
            reply = await self._answer(request, body)
        except Exception:
            log.exception("unhandled error on %s %s", request.method, request.path)
            reply = self._response(problem(500, "internal_error", INTERNAL_ERROR_DETAIL))
        self.metrics.answered(endpoint_of(request.method, request.path), reply.status, time.perf_counter() - started)
        return reply

    async def _answer(self, request: HotRequest, body: Callable[[], Awaitable[bytes]]) -> Reply:
        gate = gate_of(self.app)
        principal: Principal | None = None
        path = request.path
        try:
            if gate is None:  # not started yet: fail closed, as `services.auth.http` does
                raise Unauthenticated("authentication is not available yet; retry shortly")
            principal = await gate.check(request.authorization, request.client, request.method, path)
            native = native_target(request.method, path)
            if native is not None:
                answer = await self._native(principal, *native, request.query_string)
            else:
                if_none_match = request.if_none_match if path == BULK else None
                authorize_role(principal, Action.EVALUATE)  # as `ofrep` does first: refused, the body stays unread
                answer = await self._ofrep(principal, path, await body(), if_none_match)
        except Unauthenticated as exc:
            return self._response(problem(401, "unauthenticated", exc.detail, headers=_CHALLENGE))
        except Forbidden as exc:
            assert gate is not None
            gate.deny("forbidden", exc.detail, principal, request.client, request.method, path)
            return self._response(problem(403, "forbidden", exc.detail))
        except TooManyFailures as exc:
            return self._response(rate_limited(exc.retry_after, reason="too many failed authentications"))
        except KeyStoreUnavailable as exc:
            return self._reply(ofrep.Answer(*refusal(Unavailable("postgres", str(exc)))))
        return self._reply(answer)

    def _reply(self, answer: ofrep.Answer) -> Reply:
        if answer.status == 304:
            headers = [("etag", answer.etag), *self._security] if answer.etag is not None else [*self._security]
            return Reply(304, headers, answer.body)
        length = ("content-length", str(len(answer.body)))
        if answer.status == 503:
            return Reply(503, [_JSON, length, *_RETRY_AFTER, *self._security], answer.body)
        if answer.etag is None:
            return Reply(answer.status, [_JSON, length, *self._security], answer.body)
        return Reply(answer.status, [_JSON, length, ("etag", answer.etag), *self._security], answer.body)

    # --- the synchronous path: no await between reading the body and answering ----------------------------------

    def evaluator(self, authorization: str | None, client: str) -> Principal | None:
        """The caller, if known at once and allowed to evaluate (`AuthGate.verified`); else None: ask `reply`.

        Then `planned` may answer once the body is read. Nothing is refused here: a refusal, with its count and
        log, is `reply`'s.
        """
        gate = gate_of(self.app)
        if gate is None:
            return None
        principal = gate.verified(authorization, client)
        if principal is None or Action.EVALUATE not in allowed(principal.role):
            return None
        return principal

    def planned(self, principal: Principal, path: str, body: bytes, if_none_match: str | None) -> Reply | None:
        """OFREP's answer to `evaluator`'s principal from a plan, as `reply` would give it; None: ask `reply`."""
        try:
            wiring = self._wiring
            answer = self._planned(wiring, wiring.documents(), principal, path, body, if_none_match)
        except Exception:  # `reply` answers it, and logs what it has to
            return None
        return None if answer is None else self._reply(answer)

    def kept_native(self, principal: Principal, path: str, query_string: str) -> Reply | None:
        """The native answer kept for `evaluator`'s principal and this request, as `reply` would give it; else None."""
        target = native_target("GET", path)
        answers = self._answers
        if target is None or answers is None or answers.service is not self._wiring.service:
            return None
        answer = self._kept(answers, _native_key(principal, *target, query_string))
        return None if answer is None else self._reply(answer)

    async def _ofrep(self, principal: Principal, path: str, body: bytes, if_none_match: str | None) -> ofrep.Answer:
        """OFREP's answer: from a plan when the documents are at hand, else kept or computed by the use cases."""
        wiring = self._wiring
        documents = wiring.documents()
        planned = self._planned(wiring, documents, principal, path, body, if_none_match)
        if planned is not None:
            return planned
        answers = self._answer_cache(documents)
        key = (principal.role, principal.org_id, path, body)  # all of the caller that the answer depends on
        kept = self._kept(answers, key)
        if kept is not None:
            return ofrep.conditional(kept, if_none_match)
        wiring.metrics.computed()
        started = answers.start()
        recorder = Recorder(wiring.evaluations())
        if path == BULK:
            answer = await ofrep.evaluate_flags(recorder, principal, body, None)
        else:
            answer = await ofrep.evaluate_flag(recorder, principal, path[len(SINGLE) :], body)
        await answers.keep(key, answer, recorder, started)
        return ofrep.conditional(answer, if_none_match)

    async def _native(self, principal: Principal, org_id: str, flag_key: str, query_string: str) -> ofrep.Answer:
        """The native answer, kept and served again as OFREP's are: under the caller's scope and the raw request.

        The query string is the key as sent (parameters in another order are another entry), so a kept answer
        costs no parsing, validation, evaluation or rendering; anything but a 200 is computed every time.
        """
        wiring = self._wiring
        answers = self._answer_cache(wiring.documents())
        key = _native_key(principal, org_id, flag_key, query_string)
        kept = self._kept(answers, key)
        if kept is not None:
            return kept
        wiring.metrics.computed()
        started = answers.start()
        recorder = Recorder(wiring.evaluations())
        answer = await _native(recorder, principal, org_id, flag_key, query_string)
        await answers.keep(key, answer, recorder, started)
        return answer

    def _answer_cache(self, documents: QueryService) -> AnswerCache:
        answers = self._answers
        if answers is None or answers.service is not documents:
            answers = self._answers = AnswerCache(documents)
        return answers

    def _kept(self, answers: AnswerCache, key: tuple[object, ...]) -> ofrep.Answer | None:
        """A kept answer to `key`, counted as the evaluations it holds; None when there is none still good."""
        kept = answers.get(key)
        if kept is None:
            return None
        self._wiring.count_evaluations(kept.org_id, kept.flag_keys)
        self._wiring.metrics.exposed(kept.exposures, "kept")
        return kept.answer

    def _planned(
        self,
        wiring: Wiring,
        documents: QueryService,
        principal: Principal,
        path: str,
        body: bytes,
        if_none_match: str | None,
    ) -> ofrep.Answer | None:
        """The 200 answer from this worker's plans (`services.query.plans`), counted; None when they cannot give it.

        They give it for a well-formed request whose documents the in-process cache holds, for a user without an
        override of the flag (bulk: of any flag). Anything else (an error to answer, a document to read, a user
        override) returns None, and the use cases answer as they always do.
        """
        try:
            who = ofrep.target(principal, body)
        except Exception:  # the use cases refuse it, with the answer and the log that refusal has
            return None
        at_hand = documents.at_hand(who.org_id, who.user_id)
        if at_hand is None:
            return None
        catalog, org, user = at_hand
        plans = self._plans
        if plans is None or plans.service is not documents:
            plans = self._plans = Plans(documents)
        org_plans = plans.of(catalog, org)
        now = time.time()
        if path == BULK:
            if user is not None and user.user:
                return None
            answer = org_plans.bulk(who.platform, now).answer(who.user_id, who.context)
            wiring.count_evaluations(who.org_id, org_plans.keys)
            wiring.metrics.exposed(answer.exposures, "plan")  # type: ignore[arg-type]  # a plan's answers have them
            return ofrep.conditional(answer, if_none_match)
        key = path[len(SINGLE) :]
        if user is not None and (who.user_id, key) in user.user:
            return None
        plan = org_plans.flag(key, now)
        if plan is None:
            return None
        wiring.count_evaluations(who.org_id, (key,))
        answer = plan.answer(who.platform, who.user_id, who.context)
        wiring.metrics.exposed(answer.exposures, "plan")  # type: ignore[arg-type]  # a plan's answers have them
        return answer

    def _response(self, response: Response) -> Reply:
        raw = [(n.decode("latin-1"), v.decode("latin-1")) for n, v in response.raw_headers]
        return Reply(response.status_code, [*raw, *self._security], bytes(response.body))


def _native_key(principal: Principal, org_id: str, flag_key: str, query_string: str) -> tuple[object, ...]:
    """All of the caller and the request that a native answer depends on (`authorize` reads role and org)."""
    return (principal.role, principal.org_id, NATIVE, org_id, flag_key, query_string)


async def _native(
    service: ofrep.Evaluator, principal: Principal, org_id: str, flag_key: str, query_string: str
) -> ofrep.Answer:
    """`GET /v1/orgs/{org_id}/flags/{flag_key}` as the app's route answers it, errors as its handler does."""
    query = QueryParams(query_string)
    try:
        org = validation.org_id(org_id)
        authorize(principal, Action.EVALUATE, org_id=org)
        key = validation.flag_key(flag_key)
        platform = validation.platform(query.get("platform"))
        user = validation.user_id(query.get("user"))
        attrs = contexts.from_query(query.multi_items()) if "context" in query_string or "%" in query_string else None
        result = await service.evaluate(org, key, platform=platform, user_id=user, context=attrs)
    except QueryError as exc:
        return ofrep.Answer(*refusal(exc))
    return ofrep.Answer(200, rendering.dumps(rendering.evaluation(result)))


def security_headers() -> Headers:
    """The headers `SecurityHeaders` puts on a JSON answer, asked of it once rather than copied."""
    captured: Headers = []

    async def bare(_scope: Scope, _receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})

    async def capture(message: Message) -> None:
        captured.extend((n.decode("latin-1"), v.decode("latin-1")) for n, v in message.get("headers", ()))

    async def nothing() -> Message:
        return {"type": "http.disconnect"}

    scope = {"type": "http", "path": "/", "root_path": ""}
    layer = SecurityHeaders(bare)(scope, nothing, capture)
    try:
        layer.send(None)  # over a bare answer the layer never suspends: no event loop needed
    except StopIteration:
        return captured
    raise RuntimeError("the security header layer suspended")


class FastPath:
    """ASGI: answer the hot routes from `HotPath`; pass every other request to `app`."""

    __slots__ = ("_cors", "_endpoint", "app")

    def __init__(self, app: FastAPI, *, cors: bool = False) -> None:
        self.app = app
        self._cors = cors  # the app has a CORS layer: leave requests from browsers to it
        self._endpoint = HotPath(app)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and is_hot(scope["method"], scope["path"])
            and not (self._cors and has_origin(scope["headers"]))
        ):
            reply = await self._endpoint.reply(HotRequest.of_asgi(scope), lambda: read_body(receive))
            await send({"type": "http.response.start", "status": reply.status, "headers": reply.raw_headers})
            await send({"type": "http.response.body", "body": reply.body})
            return
        await self.app(scope, receive, send)


def has_origin(headers: Iterable[tuple[bytes, bytes]]) -> bool:
    return any(name == b"origin" for name, _ in headers)


async def read_body(receive: Receive) -> bytes:
    """The request body, or its first `ofrep.MAX_BODY + 1` bytes: enough to refuse the rest unread."""
    message = await receive()
    body: bytes = message.get("body", b"")
    if not message.get("more_body", False):
        return body
    chunks, size = [body], len(body)
    while message.get("more_body", False) and size <= ofrep.MAX_BODY:
        message = await receive()
        chunk = message.get("body", b"")
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)
