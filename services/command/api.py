"""The command API: routes from the architecture doc, and one JSON error shape for every failure.

Routes only translate HTTP into commands and outcomes into HTTP; the decisions
live in `handlers`, the I/O behind the `EventStore` port. Every error is
`{"error", "detail", "field", …}`: bad input is a 4xx naming the field, a
database outage is a 503, and anything else is a logged, generic 500.

Around the routes, outermost first: security headers on every answer; CORS for
the origins in `FLAGS_CORS_ORIGINS` (none by default: no layer at all); the
last-resort 500 (`UnhandledErrors`); the request guard (body size, JSON only). Every write is
charged to its API key's token bucket (`FLAGS_COMMAND_RATE_PER_SECOND`,
`FLAGS_COMMAND_RATE_BURST`): past it, `429 rate_limited` with `Retry-After`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from events import Variant
from events.scope import MAX_STREAM_LENGTH
from events.vocabulary import ORG_ID_PATTERN
from flagcore import InvalidTransition, format_instant
from services.auth.authenticator import KeyStoreUnavailable
from services.auth.http import AuthGate, Caller, Gate, install_auth_handlers, use_gate
from services.auth.policy import Action, Principal, authorize
from services.command.audit_api import router as audit_router
from services.command.commands import (
    UNSET,
    ArchiveFlag,
    DefineFlag,
    EngageKillSwitch,
    ReleaseKillSwitch,
    UpdateFlag,
)
from services.command.dependencies import Service, Wired, Wiring, wiring_of
from services.command.errors import (
    InvalidCommand,
    SegmentInUse,
    StoreUnavailable,
    SubscriptionsUnavailable,
    UnknownFlag,
    UnknownKey,
    UnknownSegment,
    UnknownSubscription,
    VersionConflict,
)
from services.command.key_api import router as key_router
from services.command.level_api import router as level_router
from services.command.lifecycle import stale_report
from services.command.metrics import install_metrics
from services.command.middleware import RequestGuard
from services.command.ports import EventStore, RelayView
from services.command.routing import CHANGE_RESPONSES, ERRORS, FlagKeyPath, FlagKeyQuery, given, meta, run
from services.command.rules_api import reads as rules_reads
from services.command.rules_api import router as rules_router
from services.command.schemas import (
    ArchiveFlagRequest,
    ChangeResult,
    DefineFlagRequest,
    KillSwitchRequest,
    StaleFlagOut,
    StaleFlagsOut,
    StreamValue,
    UpdateFlagRequest,
    VariantIn,
)
from services.command.segment_api import router as segment_router
from services.command.service import utc_now
from services.command.subscription_api import router as subscription_router
from services.command.timetravel.api import router as timetravel_router
from services.command.timetravel.errors import TimeTravelError
from services.command.whoami import router as whoami_router
from services.http import (
    CORS,
    UNAVAILABLE_HEADERS,
    HTTPProblem,
    SecurityHeaders,
    TokenBucketLimiter,
    UnhandledErrors,
    error_body,
    normalise_origin,
    problem,
    problem_handler,
    rate_limited,
)
from services.infra.settings import Settings
from services.observability.trace_requests import TraceRequests

log = logging.getLogger(__name__)

__all__ = ["create_app"]


Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]


def create_app(
    settings: Settings,
    *,
    store: EventStore | None = None,
    relay: RelayView | None = None,
    auth: AuthGate | None = None,
    lifespan: Lifespan | None = None,
    clock: Callable[[], datetime] = utc_now,
) -> FastAPI:
    """The ASGI app. Give `store` (and `auth`) directly (tests), or a `lifespan` that connects the app's
    `Wiring` and installs its gate (bootstrap)."""
    app = FastAPI(
        title="flagstream command API",
        version="1",
        description="Changes to feature flags, recorded as hash-chained events and relayed to Kafka.",
        lifespan=lifespan,
    )
    app.state.wiring = Wiring(TokenBucketLimiter(settings.command_rate_per_second, settings.command_rate_burst))
    use_gate(app, auth)
    # add_middleware wraps what is there: the last one added sees the request first.
    app.add_middleware(RequestGuard, max_body_bytes=settings.max_body_bytes)
    app.add_middleware(UnhandledErrors)
    if settings.cors_origins:  # checked now: a bad origin stops the start, not the first request
        app.add_middleware(CORS, origins=[normalise_origin(o) for o in settings.cors_origins])
    app.add_middleware(SecurityHeaders, docs_paths=_DOCS_PATHS)
    app.add_middleware(TraceRequests)  # a span per command, continuing the caller's traceparent
    install_metrics(app)  # /metrics, and every request counted (services.command.metrics)
    _install_error_handlers(app)
    install_auth_handlers(app)
    app.add_exception_handler(HTTPProblem, problem_handler)
    app.include_router(_probes)
    app.include_router(_writes, dependencies=[Depends(_charge_write)])
    app.include_router(level_router, dependencies=[Depends(_charge_write)])
    app.include_router(rules_router, dependencies=[Depends(_charge_write)])
    app.include_router(_reads)
    app.include_router(rules_reads)
    app.include_router(key_router, dependencies=[Depends(_charge_write)])
    app.include_router(audit_router, dependencies=[Depends(_charge_write)])
    app.include_router(subscription_router, dependencies=[Depends(_charge_write)])
    app.include_router(segment_router, dependencies=[Depends(_charge_write)])
    app.include_router(whoami_router)
    app.include_router(timetravel_router)
    if store is not None:
        wiring_of(app).connect(store, relay=relay, clock=clock)
    return app


_DOCS_PATHS = ("/docs", "/redoc", "/docs/oauth2-redirect")
_WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


async def _charge_write(request: Request, caller: Caller, wiring: Wired, gate: Gate) -> None:
    """Take one token from the caller's bucket for a write (reads are free), or answer 429."""
    if request.method not in _WRITE_METHODS:
        return
    wait = wiring.write_limiter.try_acquire(caller.key_id)
    if wait:
        gate.denied(request, "rate_limited", f"retry in {wait:.2f} s", caller)
        raise HTTPProblem(rate_limited(wait, reason="too many changes from this key"))


# --- writes ------------------------------------------------------------------------

_writes = APIRouter(prefix="/v1", tags=["changes"], responses=CHANGE_RESPONSES)


@_writes.post("/flags", status_code=201, response_model=ChangeResult, summary="Define a flag")
async def define_flag(body: DefineFlagRequest, service: Service, caller: Caller, response: Response) -> ChangeResult:
    authorize(caller, Action.MANAGE_FLAGS)
    command = DefineFlag(
        flag_key=body.key,
        group=body.group,
        kind=body.kind,
        description=body.description,
        owner=body.owner,
        variants=() if isinstance(body.variants, dict) else _variants(body.variants),
        expires_at=body.expires_at,
        value_type=body.type,
        values=body.variants if isinstance(body.variants, dict) else {},
        default_variant=body.default_variant,
        off_variant=body.off_variant,
        **meta(body, caller),
    )
    return await run(service, command, response)


@_writes.patch("/flags/{flag_key}", status_code=201, response_model=ChangeResult, summary="Update a flag")
async def update_flag(
    flag_key: FlagKeyPath, body: UpdateFlagRequest, service: Service, caller: Caller, response: Response
) -> ChangeResult:
    authorize(caller, Action.MANAGE_FLAGS)
    variants = given(body, "variants")  # an array: a boolean flag's arms; an object: a typed flag's variants
    command = UpdateFlag(
        flag_key=flag_key,
        kind=given(body, "kind"),
        description=given(body, "description"),
        owner=given(body, "owner"),
        group=given(body, "group"),
        value_type=given(body, "type"),
        variants=_variants(variants) if isinstance(variants, list) else UNSET,
        values=variants if isinstance(variants, dict) else UNSET,
        default_variant=given(body, "default_variant"),
        off_variant=given(body, "off_variant"),
        expires_at=given(body, "expires_at"),
        **meta(body, caller),
    )
    return await run(service, command, response)


def _variants(variants: list[VariantIn]) -> tuple[Variant, ...]:
    return tuple(Variant(name=v.name, weight=v.weight) for v in variants)


@_writes.post("/flags/{flag_key}/archive", status_code=201, response_model=ChangeResult, summary="Archive a flag")
async def archive_flag(
    flag_key: FlagKeyPath, body: ArchiveFlagRequest, service: Service, caller: Caller, response: Response
) -> ChangeResult:
    authorize(caller, Action.MANAGE_FLAGS)
    return await run(service, ArchiveFlag(flag_key=flag_key, **meta(body, caller)), response)


# --- kill switches ------------------------------------------------------


@_writes.post(
    "/flags/{flag_key}/kill-switch",
    status_code=201,
    response_model=ChangeResult,
    summary="Engage an ops flag's kill switch",
)
async def engage_kill_switch(
    flag_key: FlagKeyPath, body: KillSwitchRequest, service: Service, caller: Caller, response: Response
) -> ChangeResult:
    """Off everywhere at once, over every level, until released. System admins only; 422 for a non-ops flag."""
    authorize(caller, Action.MANAGE_FLAGS)
    return await run(service, EngageKillSwitch(flag_key=flag_key, **meta(body, caller)), response)


@_writes.delete(
    "/flags/{flag_key}/kill-switch", status_code=201, response_model=ChangeResult, summary="Release the kill switch"
)
async def release_kill_switch(
    flag_key: FlagKeyPath, body: KillSwitchRequest, service: Service, caller: Caller, response: Response
) -> ChangeResult:
    authorize(caller, Action.MANAGE_FLAGS)
    return await run(service, ReleaseKillSwitch(flag_key=flag_key, **meta(body, caller)), response)


# --- reads ---------------------------------------------------------------------------

_reads = APIRouter(prefix="/v1", tags=["log"], responses={422: ERRORS[422], 503: ERRORS[503]})


@_reads.get("/streams/{stream:path}", response_model=StreamValue, summary="A stream's head")
async def get_stream(
    stream: Annotated[
        str,
        Path(
            min_length=1,
            max_length=MAX_STREAM_LENGTH,
            pattern=r"^[^\x00-\x1f\x7f]+$",
            description="e.g. `org/acme/flag/x`.",
        ),
    ],
    service: Service,
    caller: Caller,
) -> StreamValue:
    _authorize_stream(caller, stream)
    head = await service.stream_head(stream)
    return StreamValue(stream=stream, version=head.version, value=head.value)


@_reads.get(
    "/events",
    summary="The log, in sequence order",
    response_description='`{"events": [envelope…], "next_after": last sequence}`; envelopes are the stored bytes.',
)
async def list_events(
    service: Service,
    caller: Caller,
    org: Annotated[str | None, Query(pattern=ORG_ID_PATTERN, description="Only this org's events.")] = None,
    flag: FlagKeyQuery = None,
    after: Annotated[int, Query(ge=0, le=2**63 - 1, description="Last sequence already seen.")] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Response:
    if caller.org_id is not None:
        org = org or caller.org_id  # an org-scoped key reads its own org's log
    authorize(caller, Action.READ_AUDIT, org_id=org)
    events = await service.store.list_events(org=org, flag=flag, after=after, limit=limit)
    next_after = events[-1].sequence if events else after
    # The envelopes go out as the exact stored bytes, so clients can check the hashes.
    body = b'{"events":[' + b",".join(e.body for e in events) + b'],"next_after":%d}' % next_after
    return Response(content=body, media_type="application/json")


@_reads.get("/reports/stale-flags", response_model=StaleFlagsOut, summary="Flags due for removal")
async def stale_flags(
    wiring: Wired,
    service: Service,
    caller: Caller,
    days: Annotated[int, Query(ge=1, le=3650, description="Unchanged for at least this many days.")] = 30,
) -> StaleFlagsOut:
    """Expired flags, and flags fully on or off and unchanged for `days` days (system-wide readers only)."""
    authorize(caller, Action.READ_AUDIT, org_id=None)
    now = wiring.clock()
    report = await stale_report(service.store, now=now, days=days)
    return StaleFlagsOut(
        days=days,
        as_of=format_instant(now),
        flags=[
            StaleFlagOut(
                key=f.key,
                kind=f.kind,
                owner=f.owner,
                reason=f.reason.value,
                last_changed_at=None if f.last_changed_at is None else format_instant(f.last_changed_at),
                expires_at=None if f.expires_at is None else format_instant(f.expires_at),
                value=f.value,
            )
            for f in report
        ],
    )


def _authorize_stream(caller: Principal, stream: str) -> None:
    """Flag streams and system-wide segments are the catalogue; org streams belong to their org; key streams to
    key managers."""
    kind, _, rest = stream.partition("/")
    if kind in ("flag", "segment"):
        authorize(caller, Action.READ_CATALOG)
    elif kind == "org":
        authorize(caller, Action.READ_AUDIT, org_id=rest.partition("/")[0])
    else:
        authorize(caller, Action.READ_AUDIT, org_id=None)


# --- probes --------------------------------------------------------------------------

_probes = APIRouter(tags=["probes"])


@_probes.get("/healthz", summary="The process is up")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@_probes.get("/readyz", summary="PostgreSQL is reachable", responses={503: {"description": "Not ready."}})
async def readyz(wiring: Wired) -> JSONResponse:
    service, relay = wiring.service, wiring.relay
    if service is None:
        return JSONResponse({"status": "starting", "postgres": "unknown"}, 503, UNAVAILABLE_HEADERS)
    try:
        await service.store.ping()
        lag = await relay.lag() if relay is not None else None
    except StoreUnavailable as exc:
        return JSONResponse({"status": "unavailable", "postgres": "down", "detail": str(exc)}, 503, UNAVAILABLE_HEADERS)
    answer: dict[str, Any] = {"status": "ready", "postgres": "ok", "outbox_lag": lag}
    if relay is not None:
        answer["relay"] = relay.status()
    return JSONResponse(answer)


# --- errors --------------------------------------------------------------------------

_LOCATIONS = {"body", "path", "query", "header", "cookie"}
_STATUS_CODES = {404: "not_found", 405: "method_not_allowed", 400: "bad_request", 413: "body_too_large"}


def _json_error(status: int, code: str, detail: str, field: str | None = None, **extra: Any) -> JSONResponse:
    headers = UNAVAILABLE_HEADERS if status == 503 else None
    return JSONResponse(error_body(code, detail, field, **extra), status_code=status, headers=headers)


_SYNTAX = {
    "flag_key": "a dotted lower-case key such as `platform.meta.enabled`",
    "key": "a dotted lower-case key such as `platform.meta.enabled`",
    "flag": "a dotted lower-case key such as `platform.meta.enabled`",
    "org_id": "1–64 letters, digits, `_` or `-`, starting with a letter or digit",
    "org": "1–64 letters, digits, `_` or `-`, starting with a letter or digit",
    "user_id": "1–128 letters, digits or `._@+:-`, starting with a letter or digit",
}


def _message(error: Any, field: str | None) -> str:
    if error.get("type") == "string_pattern_mismatch" and field in _SYNTAX:
        return f"must be {_SYNTAX[field]}"
    return str(error["msg"]).removeprefix("Value error, ")


def _field(loc: tuple[Any, ...] | list[Any]) -> str | None:
    parts = [str(p) for p in loc]
    if parts and parts[0] in _LOCATIONS:
        parts = parts[1:]
    return ".".join(parts) or None


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = list(exc.errors())
        broken = next((e for e in errors if e.get("type") == "json_invalid"), None)
        if broken is not None:
            reason = (broken.get("ctx") or {}).get("error", "invalid JSON")
            return _json_error(400, "malformed_json", f"body is not valid JSON: {reason}")
        listed = [
            {"field": _field(e["loc"]), "message": _message(e, _field(e["loc"])), "type": e["type"]} for e in errors
        ]
        first = errors[0]
        field = _field(first["loc"])
        message = listed[0]["message"]
        extra: dict[str, Any] = {"errors": listed}
        if first.get("type") == "enum":
            extra["allowed"] = re.findall(r"'([^']*)'", str((first.get("ctx") or {}).get("expected", "")))
        if first.get("type") == "model_attributes_type" and field is None:
            detail = "body must be a JSON object"
        elif first.get("type") == "missing" and field is None:
            detail = "a JSON object body is required"
        else:
            detail = f"{field}: {message}" if field else message
        return _json_error(422, "invalid_request", detail, field, **extra)

    @app.exception_handler(VersionConflict)
    async def conflict(_: Request, exc: VersionConflict) -> JSONResponse:
        return _json_error(
            409,
            "version_conflict",
            str(exc),
            "expected_version",
            stream=exc.stream,
            current_version=exc.current_version,
            expected_version=exc.expected_version,
        )

    @app.exception_handler(UnknownFlag)
    async def unknown(_: Request, exc: UnknownFlag) -> JSONResponse:
        return _json_error(404, "unknown_flag", str(exc), "flag_key", flag_key=exc.flag_key)

    @app.exception_handler(UnknownKey)
    async def unknown_key(_: Request, exc: UnknownKey) -> JSONResponse:
        return _json_error(404, "unknown_key", "no such API key", "key_id")

    @app.exception_handler(UnknownSubscription)
    async def unknown_subscription(_: Request, exc: UnknownSubscription) -> JSONResponse:
        return _json_error(404, "unknown_subscription", "no such subscription", "subscription_id")

    @app.exception_handler(UnknownSegment)
    async def unknown_segment(_: Request, exc: UnknownSegment) -> JSONResponse:
        return _json_error(404, "unknown_segment", "no such segment", "segment_key")

    @app.exception_handler(SegmentInUse)
    async def segment_in_use(_: Request, exc: SegmentInUse) -> JSONResponse:
        flags = [u.shown() for u in exc.uses]
        return _json_error(409, "segment_in_use", str(exc), "segment_key", flags=flags)

    @app.exception_handler(SubscriptionsUnavailable)
    async def subscriptions_unavailable(_: Request, exc: SubscriptionsUnavailable) -> JSONResponse:
        return _json_error(503, "subscriptions_unavailable", str(exc))

    @app.exception_handler(InvalidTransition)
    async def transition(_: Request, exc: InvalidTransition) -> JSONResponse:
        return _json_error(409, "invalid_transition", str(exc))

    @app.exception_handler(InvalidCommand)
    async def refused(_: Request, exc: InvalidCommand) -> JSONResponse:
        return _json_error(422, "invalid_request", exc.detail, exc.field)

    @app.exception_handler(TimeTravelError)
    async def time_travel_refused(_: Request, exc: TimeTravelError) -> Response:
        return problem(exc.status, exc.code, exc.detail, field=exc.field)

    @app.exception_handler(StoreUnavailable)
    async def unavailable(_: Request, exc: StoreUnavailable) -> JSONResponse:
        log.warning("request failed, store unavailable: %s", exc)
        return _json_error(503, "store_unavailable", "the event store is unavailable; retry later")

    @app.exception_handler(KeyStoreUnavailable)
    async def keys_unavailable(_: Request, exc: KeyStoreUnavailable) -> JSONResponse:
        return _json_error(503, "store_unavailable", "the API key store is unavailable; retry later")

    @app.exception_handler(StarletteHTTPException)
    async def http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _STATUS_CODES.get(exc.status_code, "http_error")
        return JSONResponse(error_body(code, str(exc.detail)), status_code=exc.status_code, headers=exc.headers)
