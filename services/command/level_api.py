"""Setting, clearing and scheduling a flag at each level: one route per (level, verb), made from one table.

The routes, by their FastAPI names (as in the OpenAPI document), each made by `_add_routes` from
the handler named after its verb (`set_setting`, `clear_setting`, `schedule_setting`, `unschedule_setting`):

- `set_system`, `schedule_system`, `unschedule_system`: `/v1/flags/{flag_key}/system`
- `set_org`, `clear_org`, `schedule_org`, `unschedule_org`: `/v1/orgs/{org_id}/flags/{flag_key}`
- `set_platform`, `clear_platform`, `schedule_platform`, `unschedule_platform`:
  `/v1/orgs/{org_id}/platforms/{platform}/flags/{flag_key}`
- `set_user`, `clear_user`, `schedule_user`, `unschedule_user`: `/v1/orgs/{org_id}/users/{user_id}/flags/{flag_key}`

`set_*` is PUT on the path, `clear_*` DELETE, `schedule_*` and `unschedule_*` PUT and DELETE on `{path}/schedule`.

Written without `from __future__ import annotations`: each route's `scope` parameter is a
dependency chosen per level, which FastAPI must see as an object, not a name to look up.
"""

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Response

from events import Scope
from services.auth.http import Caller
from services.auth.policy import Action, Principal, authorize
from services.command.commands import CancelScheduledSetting, ClearOverride, ScheduleSetting, SetSetting
from services.command.routing import (
    CHANGE_RESPONSES,
    FlagKeyPath,
    OrgPath,
    PlatformPath,
    Service,
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
)

router = APIRouter(prefix="/v1", tags=["changes"], responses=CHANGE_RESPONSES)


def _system() -> Scope:
    return Scope.system()


def _org(org_id: OrgPath) -> Scope:
    return Scope.org(org_id)


def _platform(org_id: OrgPath, platform: PlatformPath) -> Scope:
    return Scope.for_platform(org_id, platform)


def _user(org_id: OrgPath, user_id: UserPath) -> Scope:
    return Scope.user(org_id, user_id)


def _authorize(caller: Principal, scope: Scope) -> None:
    if scope.org_id is None:
        authorize(caller, Action.MANAGE_FLAGS)
    else:
        authorize(caller, Action.CHANGE_OVERRIDES, org_id=scope.org_id)


def _add_routes(level: str, path: str, scope_of: Callable[..., Scope], setting: str, *, clearable: bool) -> None:
    """PUT/DELETE `path` (set, clear) and `path`/schedule for one level; `setting` as in "Set an org override"."""
    AtLevel = Annotated[Scope, Depends(scope_of)]
    noun = setting.split(" ", 1)[1]

    async def set_setting(
        scope: AtLevel,
        flag_key: FlagKeyPath,
        body: SettingRequest,
        service: Service,
        caller: Caller,
        response: Response,
    ) -> ChangeResult:
        _authorize(caller, scope)
        command = SetSetting(
            scope=scope,
            flag_key=flag_key,
            enabled=given(body, "enabled"),
            rollout_percentage=given(body, "rollout_percentage"),
            **meta(body, caller),
        )
        return await run(service, command, response)

    async def clear_setting(
        scope: AtLevel, flag_key: FlagKeyPath, body: ClearRequest, service: Service, caller: Caller, response: Response
    ) -> ChangeResult:
        _authorize(caller, scope)
        return await run(service, ClearOverride(scope=scope, flag_key=flag_key, **meta(body, caller)), response)

    async def schedule_setting(
        scope: AtLevel,
        flag_key: FlagKeyPath,
        body: ScheduleRequest,
        service: Service,
        caller: Caller,
        response: Response,
    ) -> ChangeResult:
        _authorize(caller, scope)
        command = ScheduleSetting(
            scope=scope,
            flag_key=flag_key,
            effective_at=body.effective_at,
            enabled=body.enabled,
            rollout_percentage=body.rollout_percentage,
            **meta(body, caller),
        )
        return await run(service, command, response)

    async def unschedule_setting(
        scope: AtLevel,
        flag_key: FlagKeyPath,
        body: CancelScheduleRequest,
        service: Service,
        caller: Caller,
        response: Response,
    ) -> ChangeResult:
        _authorize(caller, scope)
        command = CancelScheduledSetting(
            scope=scope, flag_key=flag_key, effective_at=body.effective_at, **meta(body, caller)
        )
        return await run(service, command, response)

    def route(method: Callable[..., Any], at: str, name: str, summary: str, handler: Callable[..., Any]) -> None:
        method(at, name=name, summary=summary, status_code=201, response_model=ChangeResult)(handler)

    route(router.put, path, f"set_{level}", f"Set {setting}", set_setting)
    if clearable:
        route(router.delete, path, f"clear_{level}", f"Clear {setting}", clear_setting)
    schedule = f"{path}/schedule"
    route(router.put, schedule, f"schedule_{level}", f"Schedule {setting}", schedule_setting)
    route(router.delete, schedule, f"unschedule_{level}", f"Cancel a scheduled {noun}", unschedule_setting)


_add_routes("system", "/flags/{flag_key}/system", _system, "the system default", clearable=False)
_add_routes("org", "/orgs/{org_id}/flags/{flag_key}", _org, "an org override", clearable=True)
_add_routes("platform", "/orgs/{org_id}/platforms/{platform}/flags/{flag_key}", _platform, "a platform override",
            clearable=True)  # fmt: skip
_add_routes("user", "/orgs/{org_id}/users/{user_id}/flags/{flag_key}", _user, "a user override", clearable=True)
