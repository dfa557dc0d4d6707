"""The query service's HTTP API (FastAPI), its bootstrap and its error mapping.

Only this module names concrete adapters. The evaluation routes return `Response`
objects with orjson bodies built from precompiled documents: no pydantic model is
built per request; the models below only document the answers in OpenAPI.

Around the routes, outermost first: security headers on every answer; CORS for
the origins in `FLAGS_CORS_ORIGINS` (none by default: no layer at all); the
last-resort 500, inside them so that even that answer carries the headers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Annotated, Any

import asyncpg
from fastapi import FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from starlette.exceptions import HTTPException as StarletteHTTPException

from events import Platform
from events.vocabulary import FLAG_KEY_PATTERN, ORG_ID_PATTERN, USER_ID_PATTERN
from services.auth.authenticator import Authenticator
from services.auth.http import AuthGate, Caller, install_auth_handlers
from services.auth.policy import Action, authorize
from services.auth.postgres import PostgresKeyLookup
from services.http import CORS, SecurityHeaders, UnhandledErrors, normalise_origin
from services.http.throttle import FailedAuthThrottle
from services.infra.cache_keys import CacheKeys
from services.infra.postgres import create_pool
from services.infra.settings import Role, Settings
from services.query import rendering, validation
from services.query.adapters import DRIVER_ERRORS, InvalidationListener, PostgresDocuments, RedisDocuments
from services.query.bootstrap import install_bootstrap_route
from services.query.cache import DocumentCache
from services.query.errors import QueryError, Unavailable
from services.query.ofrep import Evaluator
from services.query.ofrep_api import install as install_ofrep
from services.query.refusals import refusal
from services.query.service import QueryService
from services.query.usage import MAX_MINUTES, CountingEvaluator, UsageCounter, UsageStore, flush_forever, series, window
from services.query.usage_redis import FAILURES as USAGE_FAILURES
from services.query.usage_redis import RedisUsage

log = logging.getLogger(__name__)
JSON = "application/json"
KEY_REFRESH_AFTER = 0.25  # s: half the key cache's life (services.auth.authenticator)


# --- documented shapes (OpenAPI only) -------------------------------------------------------------


class EventOut(BaseModel):
    id: str = Field(description="Id of the event that set the value.")
    stream: str
    version: int = Field(description="Its version in the stream.")
    actor: str
    reason: str
    occurred_at: str = Field(description="RFC 3339, UTC.")


class RolloutOut(BaseModel):
    percentage: int = Field(description="Share of subjects in the rollout, 0–100.")
    bucket: int = Field(description="The subject's sticky bucket, 1–100 (`flagcore.bucket`).")


class EvaluationOut(BaseModel):
    flag_key: str
    value: bool
    reason: str = Field(description="OpenFeature reason: STATIC, TARGETING_MATCH, SPLIT, DISABLED, DEFAULT, ERROR.")
    level: str | None = Field(description="user, platform, org or system: the level that decided.")
    error_code: str | None
    variant: str | None = Field(
        description="The experiment arm when on (sticky, Unleash's hashing), else `on`/`off`; null on error."
    )
    explanation: str
    rollout: RolloutOut | None
    event: EventOut | None


class EvaluationsOut(BaseModel):
    org_id: str
    flags: list[EvaluationOut]


class PlatformsOut(BaseModel):
    org_id: str
    enabled: list[Platform]


class StepOut(BaseModel):
    at: str = Field(description="RFC 3339, UTC: in force from this instant on.")
    enabled: bool | None = Field(description="null keeps what is in force.")
    rollout_percentage: int | None = Field(description="null keeps what is in force.")


class SystemOut(BaseModel):
    enabled: bool | None
    rollout_percentage: int | None
    schedule: list[StepOut] = Field(description="Pending scheduled steps, in time order.")
    version: int
    event: EventOut


class VariantOut(BaseModel):
    name: str
    weight: int = Field(description="Share of users in thousandths; the weights sum to 1000.")


class FlagOut(BaseModel):
    key: str
    kind: str = Field(description="release, experiment, ops or permission.")
    description: str
    owner: str | None
    group: str
    archived: bool
    killed: bool = Field(description="An ops flag's kill switch is engaged: off everywhere.")
    variants: list[VariantOut] = Field(description="An experiment's arms (empty otherwise).")
    expires_at: str | None = Field(description="When the flag is due for removal (RFC 3339, UTC).")
    version: int = Field(description="Version of the flag's definition stream.")
    event: EventOut
    system: SystemOut | None


class FlagsOut(BaseModel):
    flags: list[FlagOut]


class ScheduledStepOut(BaseModel):
    flag_key: str
    level: str = Field(description="system, org, platform or user.")
    platform: str | None
    user_id: str | None
    at: str = Field(description="RFC 3339, UTC: the step is in force from this instant on.")
    enabled: bool | None = Field(description="On/off from then on; null keeps what is in force.")
    rollout_percentage: int | None = Field(description="Rollout from then on; null keeps what is in force.")


class SchedulesOut(BaseModel):
    org_id: str
    as_of: str
    steps: list[ScheduledStepOut]


class OverrideCountOut(BaseModel):
    flag_key: str
    orgs: int = Field(description="How many orgs override the flag at any level (org, platform or user).")
    overrides: int = Field(description="How many overrides there are in all.")


class OverrideCountsOut(BaseModel):
    flags: list[OverrideCountOut] = Field(description="Flags with at least one override, in key order.")


class FlagUsageOut(BaseModel):
    flag_key: str
    total: int = Field(description="Evaluations in the whole window.")
    counts: list[int] = Field(description="Evaluations in each minute of `minutes`.")


class UsageOut(BaseModel):
    org_id: str | None = Field(description="The org counted; null: every org.")
    minutes: list[str] = Field(description="The window's minutes (RFC 3339, UTC), oldest first.")
    flags: list[FlagUsageOut] = Field(description="Flags evaluated in the window, most evaluated first.")


class ErrorOut(BaseModel):
    error: str = Field(description="Machine-readable code, e.g. `invalid_request`, `unknown_flag`.")
    detail: str
    field: str | None = Field(description="The offending parameter, when there is one.")


ERRORS: dict[int | str, dict[str, Any]] = {
    422: {"model": ErrorOut, "description": "A malformed org id, flag key, platform or user id."},
    503: {"model": ErrorOut, "description": "Postgres is unreachable."},
}

OrgPath = Annotated[
    str, Path(description="Organisation id.", json_schema_extra={"pattern": ORG_ID_PATTERN}, examples=["acme"])
]
FlagPath = Annotated[
    str,
    Path(description="Flag key.", json_schema_extra={"pattern": FLAG_KEY_PATTERN}, examples=["ai.insights.enabled"]),
]
PlatformQuery = Annotated[
    str | None,
    Query(description="Evaluate for one of the org's platforms.", json_schema_extra={"enum": [*Platform]}),
]
MinutesQuery = Annotated[
    int, Query(ge=1, le=MAX_MINUTES, description="The window: this many minutes up to now (1–1440).")
]
UserQuery = Annotated[
    str | None,
    Query(description="Evaluate for one user of the org.", json_schema_extra={"pattern": USER_ID_PATTERN}),
]


class JSONBytes(JSONResponse):
    """A JSON response whose body arrives serialised (by orjson): nothing to validate or encode.

    A `JSONResponse` so that OpenAPI documents the route's `response_model` as its body.
    """

    def render(self, content: Any) -> bytes:
        assert isinstance(content, bytes)
        return content


def _json(body: bytes, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    return JSONBytes(body, status_code=status, headers=headers)


# --- the app ------------------------------------------------------------------------------------------


class Runtime:
    """What the lifespan connects (or, in tests, what was handed in already wired)."""

    def __init__(
        self, settings: Settings, service: QueryService | None = None, usage: UsageStore | None = None
    ) -> None:
        self.settings = settings
        self.service = service
        self.counter = UsageCounter()
        self.usage = usage  # where the counts of every worker add up (Redis), once connected
        self.evaluator: Evaluator | None = None if service is None else self._counted(service)
        self.ping: Callable[[], Awaitable[bool]] | None = None if service is None else _always_ready
        self._given = service is not None
        self.app: FastAPI | None = None
        self.pool: asyncpg.Pool | None = None  # for the SDK bootstrap route

    def _counted(self, service: QueryService) -> Evaluator:
        """The use cases, counting evaluations when there is a store for the counts (never piling them up)."""
        return service if self.usage is None else CountingEvaluator(service, self.counter)

    @asynccontextmanager
    async def lifespan(self, _app: FastAPI) -> AsyncIterator[None]:
        if self._given:
            yield
            return
        s = self.settings
        keys = CacheKeys(s.redis_prefix)
        try:
            pool = await create_pool(s, Role.QUERY, min_size=2, max_size=10)
        except DRIVER_ERRORS as exc:  # serve (503s) and report not ready until it is up
            log.error("Postgres unreachable at start: %r", exc)
            pool = await create_pool(s, Role.QUERY, min_size=0, max_size=10)
        redis: Redis | None = None
        listener: asyncio.Task[None] | None = None
        flusher: asyncio.Task[None] | None = None
        if s.query_cache:
            redis = Redis.from_url(
                s.redis_url,
                **s.redis_options(),
                socket_timeout=0.5,
                socket_connect_timeout=0.5,
                retry=Retry(NoBackoff(), 1),
            )
            cache = DocumentCache(RedisDocuments(redis), ttl=s.cache_ttl_seconds)
            listener = asyncio.create_task(InvalidationListener(redis, keys, cache).run())
            self.usage = RedisUsage(redis, s.redis_prefix)
            flusher = asyncio.create_task(flush_forever(self.counter, self.usage, failures=USAGE_FAILURES))
        else:
            cache = DocumentCache(None, ttl=s.cache_ttl_seconds, local=False)
            log.warning("caching is off (FLAGS_QUERY_CACHE=false): every document is read from Postgres")
        self.pool = pool
        source = PostgresDocuments(pool)
        self.ping = source.ping
        if self.app is not None and self.app.state.auth is None:
            # A key in use is read again in the background at half its cache life: evaluations never wait on it.
            authenticator = Authenticator(PostgresKeyLookup(pool), refresh_after=KEY_REFRESH_AFTER)
            self.app.state.auth = AuthGate(authenticator, throttle=FailedAuthThrottle())
        self.service = QueryService(cache, source, keys)
        self.evaluator = self._counted(self.service)
        try:
            yield
        finally:
            for task in (listener, flusher):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
            if redis is not None:
                await redis.aclose()
            await pool.close()


async def _always_ready() -> bool:
    return True


def create_app(
    settings: Settings,
    *,
    service: QueryService | None = None,
    auth: AuthGate | None = None,
    usage: UsageStore | None = None,
) -> FastAPI:
    """The HTTP app; its lifespan connects Postgres and Redis unless a wired `service` (`auth`, `usage`) is given."""
    runtime = Runtime(settings, service, usage)
    app = FastAPI(
        title="flagstream query",
        version="1.0.0",
        summary="Evaluate feature flags for an org, platform and user, with where each value came from.",
        lifespan=runtime.lifespan,
    )

    def service() -> QueryService:
        assert runtime.service is not None, "lifespan not started"
        return runtime.service

    def evaluator() -> Evaluator:
        """The evaluation use cases, counted (services.query.usage): what every evaluation route calls."""
        assert runtime.evaluator is not None, "lifespan not started"
        return runtime.evaluator

    @app.get(
        "/v1/orgs/{org_id}/flags/{flag_key}",
        response_model=EvaluationOut,
        response_class=JSONBytes,
        responses={404: {"model": ErrorOut, "description": "No such flag (`unknown_flag`)."}, **ERRORS},
        summary="Evaluate one flag",
    )
    async def evaluate_flag(
        caller: Caller, org_id: OrgPath, flag_key: FlagPath, platform: PlatformQuery = None, user: UserQuery = None
    ) -> Response:
        org = validation.org_id(org_id)
        authorize(caller, Action.EVALUATE, org_id=org)
        key = validation.flag_key(flag_key)
        p = validation.platform(platform)
        u = validation.user_id(user)
        result = await evaluator().evaluate(org, key, platform=p, user_id=u)
        return _json(rendering.dumps(rendering.evaluation(result)))

    @app.get(
        "/v1/orgs/{org_id}/flags",
        response_model=EvaluationsOut,
        response_class=JSONBytes,
        responses=ERRORS,
        summary="Evaluate every flag",
    )
    async def evaluate_flags(
        caller: Caller, org_id: OrgPath, platform: PlatformQuery = None, user: UserQuery = None
    ) -> Response:
        org = validation.org_id(org_id)
        authorize(caller, Action.EVALUATE, org_id=org)
        p = validation.platform(platform)
        u = validation.user_id(user)
        results = await evaluator().evaluate_all(org, platform=p, user_id=u)
        return _json(rendering.dumps({"org_id": org, "flags": [rendering.evaluation(e) for e in results]}))

    @app.get(
        "/v1/orgs/{org_id}/platforms",
        response_model=PlatformsOut,
        response_class=JSONBytes,
        responses=ERRORS,
        summary="The org's enabled ad platforms",
    )
    async def platforms(caller: Caller, org_id: OrgPath, user: UserQuery = None) -> Response:
        org = validation.org_id(org_id)
        authorize(caller, Action.EVALUATE, org_id=org)
        u = validation.user_id(user)
        enabled = await service().enabled_platforms(org, user_id=u)
        return _json(rendering.dumps({"org_id": org, "enabled": [p.value for p in enabled]}))

    @app.get(
        "/v1/flags",
        response_model=FlagsOut,
        response_class=JSONBytes,
        responses={503: ERRORS[503]},
        summary="Flag definitions with their system defaults and versions",
    )
    async def flags(caller: Caller) -> Response:
        authorize(caller, Action.READ_CATALOG)
        return _json((await service().catalog()).listing)

    @app.get(
        "/v1/orgs/{org_id}/schedules",
        response_model=SchedulesOut,
        response_class=JSONBytes,
        responses=ERRORS,
        summary="What is scheduled for the org",
    )
    async def schedules(
        caller: Caller,
        org_id: OrgPath,
        flag: Annotated[
            str | None, Query(description="Only this flag.", json_schema_extra={"pattern": FLAG_KEY_PATTERN})
        ] = None,
    ) -> Response:
        """Pending steps at the system level and in the org's overrides, soonest first (audit readers)."""
        org = validation.org_id(org_id)
        authorize(caller, Action.READ_AUDIT, org_id=org)
        key = None if flag is None else validation.flag_key(flag, "flag")
        now = datetime.now(UTC)
        steps = await service().schedules(org, now=now, flag_key=key)
        return _json(rendering.dumps({"org_id": org, "as_of": now, "steps": steps}))

    @app.get(
        "/v1/reports/override-counts",
        response_model=OverrideCountsOut,
        response_class=JSONBytes,
        responses={503: ERRORS[503]},
        summary="How many orgs override each flag",
    )
    async def override_counts(caller: Caller) -> Response:
        """System-wide readers only (system admins, system auditors): a count across every org, not in the
        cached catalogue, because override changes do not invalidate it."""
        authorize(caller, Action.READ_AUDIT)
        if runtime.pool is None:
            raise Unavailable("postgres", "the service is starting")
        counts = await PostgresDocuments(runtime.pool).override_counts()
        return _json(rendering.dumps({"flags": counts}))

    async def usage_answer(org: str | None, minutes: int) -> Response:
        if runtime.usage is None:
            raise Unavailable("redis", "evaluation counts are kept in Redis, which this service does not use")
        wanted = window(time.time(), minutes)
        try:
            buckets = await runtime.usage.read(org, wanted)
        except USAGE_FAILURES as exc:
            raise Unavailable("redis", str(exc) or type(exc).__name__) from exc
        return _json(rendering.dumps(series(org, wanted, buckets)))

    @app.get(
        "/v1/orgs/{org_id}/usage",
        response_model=UsageOut,
        response_class=JSONBytes,
        responses={**ERRORS, 503: {"model": ErrorOut, "description": "Redis is unreachable."}},
        summary="The org's evaluations per flag per minute",
    )
    async def org_usage(caller: Caller, org_id: OrgPath, minutes: MinutesQuery = 60) -> Response:
        """Counted by every worker of every replica, flushed to Redis about once a second (audit readers)."""
        org = validation.org_id(org_id)
        authorize(caller, Action.READ_AUDIT, org_id=org)
        return await usage_answer(org, minutes)

    @app.get(
        "/v1/usage",
        response_model=UsageOut,
        response_class=JSONBytes,
        responses={**ERRORS, 503: {"model": ErrorOut, "description": "Redis is unreachable."}},
        summary="Every org's evaluations per flag per minute",
    )
    async def all_usage(caller: Caller, minutes: MinutesQuery = 60) -> Response:
        """System-wide readers only (system admins, system auditors)."""
        authorize(caller, Action.READ_AUDIT)
        return await usage_answer(None, minutes)

    @app.get("/healthz", summary="The process is up")
    async def healthz() -> Response:
        return _json(b'{"status":"ok"}')

    @app.get("/readyz", summary="Postgres is reachable (Redis is reported, but only a cache)")
    async def readyz() -> Response:
        if runtime.ping is None or runtime.service is None:
            return _json(rendering.dumps({"status": "starting"}), 503)
        postgres = await runtime.ping()
        body = {
            "status": "ready" if postgres else "unavailable",
            "postgres": postgres,
            "redis": runtime.service.cache.online,
        }
        return _json(rendering.dumps(body), 200 if postgres else 503)

    install_ofrep(app, evaluator)
    install_bootstrap_route(app, settings, lambda: runtime.pool, errors=ERRORS)
    app.state.auth = auth

    def count_evaluations(org_id: str, flag_keys: tuple[str, ...]) -> None:
        """Count what the hot path served from its answer cache, as the counted use cases would have."""
        if runtime.usage is not None:
            runtime.counter.count_all(org_id, flag_keys)

    app.state.query_documents = service  # the hot path's answer cache (services.query.answers) checks these
    app.state.count_evaluations = count_evaluations
    runtime.app = app
    _install_error_handlers(app)
    install_auth_handlers(app)
    # add_middleware wraps what is there: the last one added sees the request first.
    app.add_middleware(UnhandledErrors)
    if settings.cors_origins:  # checked now: a bad origin stops the start, not the first request
        app.add_middleware(CORS, origins=[normalise_origin(o) for o in settings.cors_origins])
    app.add_middleware(SecurityHeaders, docs_paths=("/docs", "/redoc", "/docs/oauth2-redirect"))
    return app


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(QueryError)
    async def refused(_: Request, exc: QueryError) -> Response:
        status, body = refusal(exc)
        return _json(body, status)

    @app.exception_handler(RequestValidationError)
    async def request_invalid(_: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {}
        loc = first.get("loc") or ("request",)
        return _json(rendering.error("invalid_request", str(first.get("msg", "invalid request")), str(loc[-1])), 422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> Response:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return _json(rendering.error(code, str(exc.detail)), exc.status_code, headers=exc.headers)


def app_from_env() -> FastAPI:
    """Factory for granian: settings from the `FLAGS_*` environment."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return create_app(Settings())
