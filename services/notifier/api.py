"""The notifier's HTTP surface on `FLAGS_NOTIFIER_PORT`: probes, `/metrics`, and operators' reads and "retry now".

`/v1/subscriptions/{id}/…` are the system-wide subscriptions', `/v1/orgs/{org}/subscriptions/{id}/…`
one org's, authorised exactly as the command API's subscription routes are (`services.auth`: the
same keys, roles and uniform 403): reading the delivery log and dead letters is
`read-subscriptions`, retrying is `manage-subscriptions`. Errors have the product's one shape.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from events.vocabulary import ORG_ID_PATTERN, SUBSCRIPTION_ID_PATTERN
from services.auth.authenticator import KeyStoreUnavailable
from services.auth.http import Caller, install_auth_handlers
from services.auth.policy import Action, Principal, authorize
from services.http.errors import UNAVAILABLE_HEADERS, problem
from services.notifier.metrics import NotifierMetrics
from services.notifier.operations import NotReady, Operations, SubscriptionUnavailable, UnknownSubscription
from services.notifier.ports import DeliveryLogError, DeliveryReads
from services.observability.asgi import install

__all__ = ["NotifierApi", "create_app"]

log = logging.getLogger(__name__)

OrgPath = Annotated[str, Path(pattern=ORG_ID_PATTERN, description="Organisation (tenant) id.")]
SubscriptionPath = Annotated[str, Path(pattern=SUBSCRIPTION_ID_PATTERN, description="The subscription's id.")]
Limit = Annotated[int, Query(ge=1, le=500, description="At most this many, newest first.")]


@dataclass
class NotifierApi:
    """What the routes read: set by `bootstrap` once the consumer runs."""

    operations: Operations
    reads: DeliveryReads
    caught_up: Callable[[], bool]


def _api(request: Request) -> NotifierApi:
    api: NotifierApi = request.app.state.notifier
    return api


Api = Annotated[NotifierApi, Depends(_api)]

_ERROR: dict[str, Any] = {
    "content": {"application/json": {"example": {"error": "code", "detail": "…", "field": None}}}
}
ERRORS: dict[int | str, dict[str, Any]] = {
    status: {**_ERROR, "description": text}
    for status, text in {
        401: "No usable API key (`unauthenticated`).",
        403: "This key may not read (or manage) that org's subscriptions (`forbidden`).",
        404: "No such subscription in force (`unknown_subscription`, field `subscription_id`).",
        422: "Invalid request; `field` names the culprit (`invalid_request`).",
        429: "Too many failed authentications (`rate_limited`).",
        503: "Still reading the log (`not_ready`), or Postgres out of reach (`store_unavailable`); `Retry-After`.",
    }.items()
}

UNSENDABLE: dict[int | str, dict[str, Any]] = {
    409: {**_ERROR, "description": "Paused, or its secrets do not open here (`subscription_unavailable`)."}
}

router = APIRouter(prefix="/v1", tags=["deliveries"], responses=ERRORS)
probes = APIRouter(tags=["probes"])


@probes.get("/healthz", summary="The process answers")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@probes.get("/readyz", summary="Caught up with the log, and the delivery log reachable",
            responses={503: {"description": "Not ready."}})  # fmt: skip
async def readyz(api: Api) -> JSONResponse:
    try:
        await api.reads.ping()
    except DeliveryLogError as exc:
        return JSONResponse({"status": "unavailable", "postgres": "down", "detail": str(exc)}, status_code=503,
                            headers=UNAVAILABLE_HEADERS)  # fmt: skip
    if not api.caught_up():
        return JSONResponse({"status": "catching_up", "postgres": "ok"}, status_code=503, headers=UNAVAILABLE_HEADERS)
    return JSONResponse({"status": "ready", "postgres": "ok"})


async def _attempts(org: str | None, sid: str, limit: int, caller: Principal, api: NotifierApi) -> dict[str, Any]:
    authorize(caller, Action.READ_SUBSCRIPTIONS, org_id=org)
    return await api.operations.attempts(org, sid, limit)


async def _dead_letters(org: str | None, sid: str, limit: int, caller: Principal, api: NotifierApi) -> dict[str, Any]:
    authorize(caller, Action.READ_SUBSCRIPTIONS, org_id=org)
    return await api.operations.dead_letters(org, sid, limit)


async def _retry(org: str | None, sid: str, caller: Principal, api: NotifierApi) -> JSONResponse:
    authorize(caller, Action.MANAGE_SUBSCRIPTIONS, org_id=org)
    answer = await api.operations.retry(org, sid)
    log.info("%s asked to retry the dead letters of %s", caller.actor.id, sid)
    return JSONResponse(answer, status_code=202)


@router.get("/subscriptions/{subscription_id}/deliveries", summary="A system-wide subscription's last attempts")
async def system_attempts(subscription_id: SubscriptionPath, caller: Caller, api: Api, limit: Limit = 50
                          ) -> dict[str, Any]:  # fmt: skip
    return await _attempts(None, subscription_id, limit, caller, api)


@router.get("/orgs/{org_id}/subscriptions/{subscription_id}/deliveries", summary="An org subscription's last attempts")
async def org_attempts(org_id: OrgPath, subscription_id: SubscriptionPath, caller: Caller, api: Api,
                       limit: Limit = 50) -> dict[str, Any]:  # fmt: skip
    return await _attempts(org_id, subscription_id, limit, caller, api)


@router.get("/subscriptions/{subscription_id}/dead-letters", summary="A system-wide subscription's dead letters")
async def system_dead_letters(subscription_id: SubscriptionPath, caller: Caller, api: Api, limit: Limit = 100
                              ) -> dict[str, Any]:  # fmt: skip
    return await _dead_letters(None, subscription_id, limit, caller, api)


@router.get("/orgs/{org_id}/subscriptions/{subscription_id}/dead-letters", summary="An org subscription's dead letters")
async def org_dead_letters(org_id: OrgPath, subscription_id: SubscriptionPath, caller: Caller, api: Api,
                           limit: Limit = 100) -> dict[str, Any]:  # fmt: skip
    return await _dead_letters(org_id, subscription_id, limit, caller, api)


@router.post("/subscriptions/{subscription_id}/dead-letters/retry", status_code=202, responses=UNSENDABLE,
             summary="Send a system-wide subscription's dead letters again, now")  # fmt: skip
async def retry_system_dead_letters(subscription_id: SubscriptionPath, caller: Caller, api: Api) -> JSONResponse:
    return await _retry(None, subscription_id, caller, api)


@router.post("/orgs/{org_id}/subscriptions/{subscription_id}/dead-letters/retry", status_code=202,
             responses=UNSENDABLE, summary="Send an org subscription's dead letters again, now")  # fmt: skip
async def retry_org_dead_letters(org_id: OrgPath, subscription_id: SubscriptionPath, caller: Caller, api: Api
                                 ) -> JSONResponse:  # fmt: skip
    return await _retry(org_id, subscription_id, caller, api)


def create_app(api: NotifierApi, metrics: NotifierMetrics) -> FastAPI:
    """The notifier's app over the running consumer; the caller installs its auth gate (`use_gate`)."""
    app = FastAPI(title="flagstream notifier", version="1", docs_url="/docs", redoc_url=None)
    app.state.notifier = api
    app.include_router(probes)
    app.include_router(router)
    install(app, metrics.metrics)
    install_auth_handlers(app)
    _install_errors(app)
    return app


def _install_errors(app: FastAPI) -> None:
    @app.exception_handler(UnknownSubscription)
    async def unknown(_: Request, exc: UnknownSubscription) -> Response:
        return problem(404, "unknown_subscription", str(exc), field="subscription_id")

    @app.exception_handler(SubscriptionUnavailable)
    async def unavailable(_: Request, exc: SubscriptionUnavailable) -> Response:
        return problem(409, "subscription_unavailable", str(exc), field="subscription_id")

    @app.exception_handler(NotReady)
    async def not_ready(_: Request, exc: NotReady) -> Response:
        return problem(503, "not_ready", str(exc), headers=UNAVAILABLE_HEADERS)

    @app.exception_handler(DeliveryLogError)
    async def store_down(_: Request, exc: DeliveryLogError) -> Response:
        log.warning("request failed, delivery log unavailable: %s", exc)
        return problem(503, "store_unavailable", "the delivery log is unavailable; retry later",
                       headers=UNAVAILABLE_HEADERS)  # fmt: skip

    @app.exception_handler(KeyStoreUnavailable)
    async def keys_down(_: Request, exc: KeyStoreUnavailable) -> Response:
        return problem(503, "store_unavailable", "the API key store is unavailable; retry later",
                       headers=UNAVAILABLE_HEADERS)  # fmt: skip

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"][1:]) or None
        return problem(422, "invalid_request", f"{field}: {first['msg']}" if field else first["msg"], field=field)

    @app.exception_handler(StarletteHTTPException)
    async def http(_: Request, exc: StarletteHTTPException) -> Response:
        codes = {404: "not_found", 405: "method_not_allowed"}
        return problem(exc.status_code, codes.get(exc.status_code, "http_error"), str(exc.detail),
                       headers=exc.headers)  # fmt: skip
