"""The query service's HTTP API (FastAPI): its routes, each a named handler, and its error mapping.

The evaluation routes return `Response` objects with orjson bodies built from
precompiled documents: no pydantic model is built per request; the models in
`schemas` only document the answers in OpenAPI. What the routes use comes in as
typed dependencies (`services.query.dependencies`); which adapters stand behind
them is `bootstrap`'s business.

Around the routes, outermost first: security headers on every answer; CORS for
the origins in `FLAGS_CORS_ORIGINS` (none by default: no layer at all); the
last-resort 500, inside them so that even that answer carries the headers.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from events.vocabulary import ORG_ID_PATTERN
from services.auth.authenticator import KeyStoreUnavailable
from services.auth.http import AuthGate, Caller, install_auth_handlers, use_gate
from services.auth.policy import Action, authorize
from services.http import CORS, SecurityHeaders, UnhandledErrors, normalise_origin
from services.http.errors import UNAVAILABLE_HEADERS
from services.infra.settings import Settings
from services.query import changes_api, contexts, ofrep_api, rendering, validation
from services.query.dependencies import NOT_STARTED, Documents, Evaluations, Wired, Wiring
from services.query.errors import QueryError, Unavailable
from services.query.refusals import refusal
from services.query.routing import (
    ERRORS,
    ContextQuery,
    FlagPath,
    JSONBytes,
    MinutesQuery,
    OrgPath,
    PlatformQuery,
    UserQuery,
    json_answer,
)
from services.query.schemas import (
    BootstrapOut,
    ErrorOut,
    EvaluationOut,
    EvaluationsOut,
    FlagsOut,
    OverrideCountsOut,
    PlatformsOut,
    SchedulesOut,
    UsageOut,
)
from services.query.service import QueryService
from services.query.usage import UsageStore, series, window
from services.query.usage_redis import FAILURES as USAGE_FAILURES

__all__ = ["create_app"]

REDIS_DOWN: dict[int | str, dict[str, Any]] = {503: {"model": ErrorOut, "description": "Redis is unreachable."}}
SnapshotOrgPath = Annotated[str, Path(description="Organisation id.", json_schema_extra={"pattern": ORG_ID_PATTERN})]

router = APIRouter()


@router.get(
    "/v1/orgs/{org_id}/flags/{flag_key}",
    response_model=EvaluationOut,
    response_class=JSONBytes,
    responses={404: {"model": ErrorOut, "description": "No such flag (`unknown_flag`)."}, **ERRORS},
    summary="Evaluate one flag",
)
async def evaluate_flag(
    request: Request,
    caller: Caller,
    evaluator: Evaluations,
    org_id: OrgPath,
    flag_key: FlagPath,
    platform: PlatformQuery = None,
    user: UserQuery = None,
    context: ContextQuery = None,
) -> Response:
    """Targeting rules read the evaluation context: `context.NAME=VALUE` parameters (strings) and/or one
    `context={JSON object}`; `rule` names the rule that matched."""
    org = validation.org_id(org_id)
    authorize(caller, Action.EVALUATE, org_id=org)
    key = validation.flag_key(flag_key)
    p = validation.platform(platform)
    u = validation.user_id(user)
    attrs = contexts.from_query(request.query_params.multi_items())
    result = await evaluator.evaluate(org, key, platform=p, user_id=u, context=attrs)
    return json_answer(rendering.dumps(rendering.evaluation(result)))


@router.get(
    "/v1/orgs/{org_id}/flags",
    response_model=EvaluationsOut,
    response_class=JSONBytes,
    responses=ERRORS,
    summary="Evaluate every flag",
)
async def evaluate_flags(
    request: Request,
    caller: Caller,
    evaluator: Evaluations,
    org_id: OrgPath,
    platform: PlatformQuery = None,
    user: UserQuery = None,
    context: ContextQuery = None,
) -> Response:
    """The evaluation context as on the single-flag route (`context.NAME=VALUE`, `context={...}`)."""
    org = validation.org_id(org_id)
    authorize(caller, Action.EVALUATE, org_id=org)
    p = validation.platform(platform)
    u = validation.user_id(user)
    attrs = contexts.from_query(request.query_params.multi_items())
    results = await evaluator.evaluate_all(org, platform=p, user_id=u, context=attrs)
    return json_answer(rendering.dumps({"org_id": org, "flags": [rendering.evaluation(e) for e in results]}))


CONTEXT_ERRORS: dict[int | str, dict[str, Any]] = {
    **ERRORS,
    422: {"model": ErrorOut, "description": "A malformed org id, flag key, body field or context attribute (named)."},
}


@router.post(
    "/v1/orgs/{org_id}/flags/{flag_key}/evaluate",
    response_model=EvaluationOut,
    response_class=JSONBytes,
    responses={404: {"model": ErrorOut, "description": "No such flag (`unknown_flag`)."}, **CONTEXT_ERRORS},
    openapi_extra=contexts.BODY_SCHEMA,
    summary="Evaluate one flag for a platform, user and evaluation context given as JSON",
)
async def evaluate_flag_posted(
    request: Request, caller: Caller, evaluator: Evaluations, org_id: OrgPath, flag_key: FlagPath
) -> Response:
    """`GET /v1/orgs/{org_id}/flags/{flag_key}` with its parameters in a JSON body: the context's numbers and
    booleans as they are."""
    org = validation.org_id(org_id)
    authorize(caller, Action.EVALUATE, org_id=org)
    key = validation.flag_key(flag_key)
    asked = contexts.from_body(await request.body())
    result = await evaluator.evaluate(org, key, platform=asked.platform, user_id=asked.user, context=asked.context)
    return json_answer(rendering.dumps(rendering.evaluation(result)))


@router.post(
    "/v1/orgs/{org_id}/evaluate",
    response_model=EvaluationsOut,
    response_class=JSONBytes,
    responses=CONTEXT_ERRORS,
    openapi_extra=contexts.BODY_SCHEMA,
    summary="Evaluate every flag for a platform, user and evaluation context given as JSON",
)
async def evaluate_flags_posted(request: Request, caller: Caller, evaluator: Evaluations, org_id: OrgPath) -> Response:
    """`GET /v1/orgs/{org_id}/flags` with its parameters in a JSON body."""
    org = validation.org_id(org_id)
    authorize(caller, Action.EVALUATE, org_id=org)
    asked = contexts.from_body(await request.body())
    results = await evaluator.evaluate_all(org, platform=asked.platform, user_id=asked.user, context=asked.context)
    return json_answer(rendering.dumps({"org_id": org, "flags": [rendering.evaluation(e) for e in results]}))


@router.get(
    "/v1/orgs/{org_id}/platforms",
    response_model=PlatformsOut,
    response_class=JSONBytes,
    responses=ERRORS,
    summary="The org's enabled ad platforms",
)
async def platforms(caller: Caller, service: Documents, org_id: OrgPath, user: UserQuery = None) -> Response:
    org = validation.org_id(org_id)
    authorize(caller, Action.EVALUATE, org_id=org)
    u = validation.user_id(user)
    enabled = await service.enabled_platforms(org, user_id=u)
    return json_answer(rendering.dumps({"org_id": org, "enabled": [p.value for p in enabled]}))


@router.get(
    "/v1/flags",
    response_model=FlagsOut,
    response_class=JSONBytes,
    responses={503: ERRORS[503]},
    summary="Flag definitions with their system defaults and versions",
)
async def flags(caller: Caller, service: Documents) -> Response:
    authorize(caller, Action.READ_CATALOG)
    return json_answer((await service.catalog()).listing)


@router.get(
    "/v1/orgs/{org_id}/schedules",
    response_model=SchedulesOut,
    response_class=JSONBytes,
    responses=ERRORS,
    summary="What is scheduled for the org",
)
async def schedules(
    caller: Caller,
    service: Documents,
    org_id: OrgPath,
    flag: Annotated[
        str | None, Query(description="Only this flag.", json_schema_extra=validation.FLAG_KEY_SCHEMA)
    ] = None,
) -> Response:
    """Pending steps at the system level and in the org's overrides, soonest first (audit readers)."""
    org = validation.org_id(org_id)
    authorize(caller, Action.READ_AUDIT, org_id=org)
    key = None if flag is None else validation.flag_key(flag, "flag")
    now = datetime.now(UTC)
    steps = await service.schedules(org, now=now, flag_key=key)
    return json_answer(rendering.dumps({"org_id": org, "as_of": now, "steps": steps}))


@router.get(
    "/v1/reports/override-counts",
    response_model=OverrideCountsOut,
    response_class=JSONBytes,
    responses={503: ERRORS[503]},
    summary="How many orgs override each flag",
)
async def override_counts(caller: Caller, wiring: Wired) -> Response:
    """System-wide readers only (system admins, system auditors): a count across every org, not in the
    cached catalogue, because override changes do not invalidate it."""
    authorize(caller, Action.READ_AUDIT)
    if wiring.override_counts is None:
        raise Unavailable("postgres", NOT_STARTED)
    counts = await wiring.override_counts.override_counts()
    return json_answer(rendering.dumps({"flags": counts}))


@router.get(
    "/v1/orgs/{org_id}/usage",
    response_model=UsageOut,
    response_class=JSONBytes,
    responses={**ERRORS, **REDIS_DOWN},
    summary="The org's evaluations per flag per minute",
)
async def org_usage(caller: Caller, wiring: Wired, org_id: OrgPath, minutes: MinutesQuery = 60) -> Response:
    """Counted by every worker of every replica, flushed to Redis about once a second (audit readers)."""
    org = validation.org_id(org_id)
    authorize(caller, Action.READ_AUDIT, org_id=org)
    return await _usage_answer(wiring.usage, org, minutes)


@router.get(
    "/v1/usage",
    response_model=UsageOut,
    response_class=JSONBytes,
    responses={**ERRORS, **REDIS_DOWN},
    summary="Every org's evaluations per flag per minute",
)
async def all_usage(caller: Caller, wiring: Wired, minutes: MinutesQuery = 60) -> Response:
    """System-wide readers only (system admins, system auditors)."""
    authorize(caller, Action.READ_AUDIT)
    return await _usage_answer(wiring.usage, None, minutes)


async def _usage_answer(usage: UsageStore | None, org: str | None, minutes: int) -> Response:
    if usage is None:
        raise Unavailable("redis", "evaluation counts are kept in Redis, which this service does not use")
    wanted = window(time.time(), minutes)
    try:
        buckets = await usage.read(org, wanted)
    except USAGE_FAILURES as exc:
        raise Unavailable("redis", str(exc) or type(exc).__name__) from exc
    return json_answer(rendering.dumps(series(org, wanted, buckets)))


@router.get("/healthz", summary="The process is up")
async def healthz() -> Response:
    return json_answer(b'{"status":"ok"}')


@router.get("/readyz", summary="Postgres is reachable (Redis is reported, but only a cache)")
async def readyz(wiring: Wired) -> Response:
    if wiring.ping is None or wiring.service is None:
        return json_answer(rendering.dumps({"status": "starting"}), 503, UNAVAILABLE_HEADERS)
    postgres = await wiring.ping()
    body = {
        "status": "ready" if postgres else "unavailable",
        "postgres": postgres,
        "redis": wiring.service.cache.online,
    }
    return json_answer(rendering.dumps(body), 200 if postgres else 503, None if postgres else UNAVAILABLE_HEADERS)


snapshot_router = APIRouter()


@snapshot_router.get(
    "/v1/orgs/{org_id}/bootstrap",
    response_model=BootstrapOut,
    summary="Snapshot for an in-process SDK: the org's state and the topic offsets it covers",
    responses=dict(ERRORS),
)
async def bootstrap(caller: Caller, wiring: Wired, org_id: SnapshotOrgPath) -> Response:
    # What the SDK starts from (`services.query.snapshots`); no docstring: OpenAPI would show it.
    org = validation.org_id(org_id)
    authorize(caller, Action.EVALUATE, org_id=org)
    if wiring.snapshots is None:
        raise Unavailable("postgres", NOT_STARTED)
    return Response(await wiring.snapshots.read(org), media_type="application/json")


# --- the error mapping: each of the service's refusals, and FastAPI's own, in the one error shape -------------


async def refused(_: Request, exc: Exception) -> Response:
    if isinstance(exc, KeyStoreUnavailable):
        exc = Unavailable("postgres", str(exc))
    assert isinstance(exc, QueryError)
    status, body = refusal(exc)
    return json_answer(body, status, UNAVAILABLE_HEADERS if status == 503 else None)


async def request_invalid(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    first = exc.errors()[0] if exc.errors() else {}
    loc = first.get("loc") or ("request",)
    return json_answer(rendering.error("invalid_request", str(first.get("msg", "invalid request")), str(loc[-1])), 422)


async def http_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return json_answer(rendering.error(code, str(exc.detail)), exc.status_code, headers=exc.headers)


# --- the app ------------------------------------------------------------------------------------------------


def create_app(
    settings: Settings,
    *,
    service: QueryService | None = None,
    auth: AuthGate | None = None,
    usage: UsageStore | None = None,
    lifespan: Callable[[FastAPI], AbstractAsyncContextManager[None]] | None = None,
) -> FastAPI:
    """The HTTP app. Give wired use cases (`service`, `auth`, `usage`: tests), or a `lifespan` that connects
    the app's `Wiring` (`bootstrap`)."""
    wiring = Wiring(settings)
    if service is not None:
        wiring.connect(service, ping=_always_ready, usage=usage)
    app = FastAPI(
        title="flagstream query",
        version="1.0.0",
        summary="Evaluate feature flags for an org, platform and user, with where each value came from.",
        lifespan=lifespan,
    )
    app.state.wiring = wiring
    use_gate(app, auth)  # `services.auth.http` and the hot path ask it; a lifespan keeps a gate it finds
    app.include_router(router)
    app.include_router(ofrep_api.router)
    app.include_router(changes_api.router)
    app.include_router(snapshot_router)
    app.add_exception_handler(QueryError, refused)
    app.add_exception_handler(KeyStoreUnavailable, refused)
    app.add_exception_handler(RequestValidationError, request_invalid)
    app.add_exception_handler(StarletteHTTPException, http_error)
    install_auth_handlers(app)
    _install_metrics(app, wiring)
    # add_middleware wraps what is there: the last one added sees the request first.
    app.add_middleware(UnhandledErrors)
    if settings.cors_origins:  # checked now: a bad origin stops the start, not the first request
        app.add_middleware(CORS, origins=[normalise_origin(o) for o in settings.cors_origins])
    app.add_middleware(SecurityHeaders, docs_paths=("/docs", "/redoc", "/docs/oauth2-redirect"))
    return app


def _install_metrics(app: FastAPI, wiring: Wiring) -> None:
    """/metrics, and the document cache's and the gate's counts read at each flush (services.query.metrics)."""
    wiring.metrics.install(
        app,
        documents=lambda: None if wiring.service is None else wiring.service.cache.stats,
        denials=lambda: None if app.state.auth is None else app.state.auth.denials,
    )


async def _always_ready() -> bool:
    return True
