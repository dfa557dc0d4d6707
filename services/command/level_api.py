"""Setting, clearing and scheduling a flag at each level: one named route per (level, verb).

- `set_system`, `schedule_system`, `unschedule_system`: `/v1/flags/{flag_key}/system`
- `set_org`, `clear_org`, `schedule_org`, `unschedule_org`: `/v1/orgs/{org_id}/flags/{flag_key}`
- `set_platform`, `clear_platform`, `schedule_platform`, `unschedule_platform`:
  `/v1/orgs/{org_id}/platforms/{platform}/flags/{flag_key}`
- `set_user`, `clear_user`, `schedule_user`, `unschedule_user`: `/v1/orgs/{org_id}/users/{user_id}/flags/{flag_key}`

`set_*` is PUT on the path, `clear_*` DELETE, `schedule_*` and `unschedule_*` PUT and DELETE on `{path}/schedule`
(the system default is never cleared, only set). A `set_*` body may also choose what the level serves when on:
a `variant` or a weighted `split` (`VariantSelected`). Each route names its level's scope (`SystemScope`, `OrgScope`...)
and hands over to the one function per verb (`_set`, `_clear`, `_schedule`, `_unschedule`). The handlers carry no
docstring: the OpenAPI document describes them by their summaries alone.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response

from events import Scope, Variant
from services.auth.http import Caller
from services.auth.policy import Action, Principal, authorize
from services.command.commands import (
    UNSET,
    CancelScheduledSetting,
    ClearOverride,
    ScheduleSetting,
    SetSetting,
    Unset,
)
from services.command.dependencies import Service
from services.command.routing import (
    CHANGE_RESPONSES,
    FlagKeyPath,
    OrgPath,
    PlatformPath,
    UserPath,
    given,
    meta,
    run,
)
from services.command.schemas import (
    CancelScheduleRequest,
    ChangeResult,
    ClearRequest,
    ScheduleRequest,
    SettingRequest,
    VariantIn,
)

router = APIRouter(prefix="/v1", tags=["changes"], responses=CHANGE_RESPONSES)

SYSTEM = "/flags/{flag_key}/system"
ORG = "/orgs/{org_id}/flags/{flag_key}"
PLATFORM = "/orgs/{org_id}/platforms/{platform}/flags/{flag_key}"
USER = "/orgs/{org_id}/users/{user_id}/flags/{flag_key}"


def _system() -> Scope:
    return Scope.system()


def _org(org_id: OrgPath) -> Scope:
    return Scope.org(org_id)


def _platform(org_id: OrgPath, platform: PlatformPath) -> Scope:
    return Scope.for_platform(org_id, platform)


def _user(org_id: OrgPath, user_id: UserPath) -> Scope:
    return Scope.user(org_id, user_id)


SystemScope = Annotated[Scope, Depends(_system)]
OrgScope = Annotated[Scope, Depends(_org)]
PlatformScope = Annotated[Scope, Depends(_platform)]
UserScope = Annotated[Scope, Depends(_user)]


def authorize_scope(caller: Principal, scope: Scope) -> None:
    """A level is a system admin's (the system level) or its org's admins' (any level of one org)."""
    if scope.org_id is None:
        authorize(caller, Action.MANAGE_FLAGS)
    else:
        authorize(caller, Action.CHANGE_OVERRIDES, org_id=scope.org_id)


async def _set(
    scope: Scope, flag_key: str, body: SettingRequest, service: Service, caller: Principal, response: Response
) -> ChangeResult:
    authorize_scope(caller, scope)
    command = SetSetting(
        scope=scope,
        flag_key=flag_key,
        enabled=given(body, "enabled"),
        rollout_percentage=given(body, "rollout_percentage"),
        variant=given(body, "variant"),
        split=_split(given(body, "split")),
        **meta(body, caller),
    )
    return await run(service, command, response)


def _split(split: list[VariantIn] | Unset | None) -> tuple[Variant, ...] | Unset | None:
    if split is None or split is UNSET:
        return split
    return tuple(Variant(name=arm.name, weight=arm.weight) for arm in split)


async def _clear(
    scope: Scope, flag_key: str, body: ClearRequest, service: Service, caller: Principal, response: Response
) -> ChangeResult:
    authorize_scope(caller, scope)
    return await run(service, ClearOverride(scope=scope, flag_key=flag_key, **meta(body, caller)), response)


async def _schedule(
    scope: Scope, flag_key: str, body: ScheduleRequest, service: Service, caller: Principal, response: Response
) -> ChangeResult:
    authorize_scope(caller, scope)
    command = ScheduleSetting(
        scope=scope,
        flag_key=flag_key,
        effective_at=body.effective_at,
        enabled=body.enabled,
        rollout_percentage=body.rollout_percentage,
        **meta(body, caller),
    )
    return await run(service, command, response)


async def _unschedule(
    scope: Scope, flag_key: str, body: CancelScheduleRequest, service: Service, caller: Principal, response: Response
) -> ChangeResult:
    authorize_scope(caller, scope)
    command = CancelScheduledSetting(
        scope=scope, flag_key=flag_key, effective_at=body.effective_at, **meta(body, caller)
    )
    return await run(service, command, response)


# Every route answers 201 with what was written (200 when there was nothing to write: `run`). They are registered
# in this order, which is the OpenAPI document's.

# --- the system default -----------------------------------------------------------------------------------------


@router.put(SYSTEM, summary="Set the system default", status_code=201, response_model=ChangeResult)
async def set_system(
    scope: SystemScope,
    flag_key: FlagKeyPath,
    body: SettingRequest,
    service: Service,
    caller: Caller,
    response: Response,
) -> ChangeResult:
    return await _set(scope, flag_key, body, service, caller, response)


@router.put(f"{SYSTEM}/schedule", summary="Schedule the system default", status_code=201, response_model=ChangeResult)
async def schedule_system(
    scope: SystemScope,
    flag_key: FlagKeyPath,
    body: ScheduleRequest,
    service: Service,
    caller: Caller,
    response: Response,
) -> ChangeResult:
    return await _schedule(scope, flag_key, body, service, caller, response)


@router.delete(
    f"{SYSTEM}/schedule", summary="Cancel a scheduled system default", status_code=201, response_model=ChangeResult
)
async def unschedule_system(
    scope: SystemScope,
    flag_key: FlagKeyPath,
    body: CancelScheduleRequest,
    service: Service,
    caller: Caller,
    response: Response,
) -> ChangeResult:
    return await _unschedule(scope, flag_key, body, service, caller, response)


# --- an org's override ------------------------------------------------------------------------------------------


@router.put(ORG, summary="Set an org override", status_code=201, response_model=ChangeResult)
async def set_org(
    scope: OrgScope, flag_key: FlagKeyPath, body: SettingRequest, service: Service, caller: Caller, response: Response
) -> ChangeResult:
    return await _set(scope, flag_key, body, service, caller, response)


@router.delete(ORG, summary="Clear an org override", status_code=201, response_model=ChangeResult)
async def clear_org(
    scope: OrgScope, flag_key: FlagKeyPath, body: ClearRequest, service: Service, caller: Caller, response: Response
) -> ChangeResult:
    return await _clear(scope, flag_key, body, service, caller, response)


@router.put(f"{ORG}/schedule", summary="Schedule an org override", status_code=201, response_model=ChangeResult)
async def schedule_org(
    scope: OrgScope, flag_key: FlagKeyPath, body: ScheduleRequest, service: Service, caller: Caller, response: Response
) -> ChangeResult:
    return await _schedule(scope, flag_key, body, service, caller, response)


@router.delete(
    f"{ORG}/schedule", summary="Cancel a scheduled org override", status_code=201, response_model=ChangeResult
)
async def unschedule_org(
    scope: OrgScope,
    flag_key: FlagKeyPath,
    body: CancelScheduleRequest,
    service: Service,
    caller: Caller,
    response: Response,
) -> ChangeResult:
    return await _unschedule(scope, flag_key, body, service, caller, response)


# --- a platform's override within an org ------------------------------------------------------------------------


@router.put(PLATFORM, summary="Set a platform override", status_code=201, response_model=ChangeResult)
async def set_platform(
    scope: PlatformScope,
    flag_key: FlagKeyPath,
    body: SettingRequest,
    service: Service,
    caller: Caller,
    response: Response,
) -> ChangeResult:
    return await _set(scope, flag_key, body, service, caller, response)


@router.delete(PLATFORM, summary="Clear a platform override", status_code=201, response_model=ChangeResult)
async def clear_platform(
    scope: PlatformScope,
    flag_key: FlagKeyPath,
    body: ClearRequest,
    service: Service,
    caller: Caller,
    response: Response,
) -> ChangeResult:
    return await _clear(scope, flag_key, body, service, caller, response)


@router.put(
    f"{PLATFORM}/schedule", summary="Schedule a platform override", status_code=201, response_model=ChangeResult
)
async def schedule_platform(
    scope: PlatformScope,
    flag_key: FlagKeyPath,
    body: ScheduleRequest,
    service: Service,
    caller: Caller,
    response: Response,
) -> ChangeResult:
    return await _schedule(scope, flag_key, body, service, caller, response)


@router.delete(
    f"{PLATFORM}/schedule", summary="Cancel a scheduled platform override", status_code=201, response_model=ChangeResult
)
async def unschedule_platform(
    scope: PlatformScope,
    flag_key: FlagKeyPath,
    body: CancelScheduleRequest,
    service: Service,
    caller: Caller,
    response: Response,
) -> ChangeResult:
    return await _unschedule(scope, flag_key, body, service, caller, response)


# --- a user's override within an org ----------------------------------------------------------------------------


@router.put(USER, summary="Set a user override", status_code=201, response_model=ChangeResult)
async def set_user(
    scope: UserScope, flag_key: FlagKeyPath, body: SettingRequest, service: Service, caller: Caller, response: Response
) -> ChangeResult:
    return await _set(scope, flag_key, body, service, caller, response)


@router.delete(USER, summary="Clear a user override", status_code=201, response_model=ChangeResult)
async def clear_user(
    scope: UserScope, flag_key: FlagKeyPath, body: ClearRequest, service: Service, caller: Caller, response: Response
) -> ChangeResult:
    return await _clear(scope, flag_key, body, service, caller, response)


@router.put(f"{USER}/schedule", summary="Schedule a user override", status_code=201, response_model=ChangeResult)
async def schedule_user(
    scope: UserScope,
    flag_key: FlagKeyPath,
    body: ScheduleRequest,
    service: Service,
    caller: Caller,
    response: Response,
) -> ChangeResult:
    return await _schedule(scope, flag_key, body, service, caller, response)


@router.delete(
    f"{USER}/schedule", summary="Cancel a scheduled user override", status_code=201, response_model=ChangeResult
)
async def unschedule_user(
    scope: UserScope,
    flag_key: FlagKeyPath,
    body: CancelScheduleRequest,
    service: Service,
    caller: Caller,
    response: Response,
) -> ChangeResult:
    return await _unschedule(scope, flag_key, body, service, caller, response)
