"""A flag's targeting rules at the system level and for one org: replace the list, clear it, read it.

- `set_system_rules`, `clear_system_rules`, `get_system_rules`: `/v1/flags/{flag_key}/rules`
- `set_org_rules`, `clear_org_rules`, `get_org_rules`: `/v1/orgs/{org_id}/flags/{flag_key}/rules`

PUT carries the full new list (`[]` clears, as DELETE does); each write is one `TargetingRulesSet` on the level's
rules stream (`.../rules`), checked by `services.command.rules` and decided by `handlers`, with the same
authorisation as the level's own setting (`level_api.authorize_scope`), `expected_version` and "the same list
again writes nothing" as every change. GET reads the stream's head from the event store (the version to expect).
"""

from __future__ import annotations

from fastapi import APIRouter, Response

from events import Scope, definition_stream
from events.changes import rules_stream
from services.auth.http import Caller
from services.auth.policy import Action, Principal, authorize
from services.command.commands import SetRules
from services.command.dependencies import Service
from services.command.errors import UnknownFlag
from services.command.level_api import OrgScope, SystemScope, authorize_scope
from services.command.routing import CHANGE_RESPONSES, ERRORS, FlagKeyPath, meta, run
from services.command.schemas import ChangeResult, ClearRulesRequest, RulesOut, RulesRequest
from services.command.service import CommandService

router = APIRouter(prefix="/v1", tags=["changes"], responses=CHANGE_RESPONSES)
reads = APIRouter(prefix="/v1", tags=["log"], responses={404: ERRORS[404], 422: ERRORS[422], 503: ERRORS[503]})

SYSTEM = "/flags/{flag_key}/rules"
ORG = "/orgs/{org_id}/flags/{flag_key}/rules"


async def _set(
    scope: Scope, flag_key: str, body: RulesRequest, service: Service, caller: Principal, response: Response
) -> ChangeResult:
    authorize_scope(caller, scope)
    rules = tuple(rule.model_dump() for rule in body.rules)
    return await run(service, SetRules(scope=scope, flag_key=flag_key, rules=rules, **meta(body, caller)), response)


async def _clear(
    scope: Scope, flag_key: str, body: ClearRulesRequest, service: Service, caller: Principal, response: Response
) -> ChangeResult:
    authorize_scope(caller, scope)
    return await run(service, SetRules(scope=scope, flag_key=flag_key, rules=(), **meta(body, caller)), response)


async def _read(scope: Scope, flag_key: str, service: CommandService) -> RulesOut:
    """The rules in force (an archived flag's too: they are its history); 404 for a flag never defined."""
    if (await service.stream_head(definition_stream(flag_key))).value is None:
        raise UnknownFlag(flag_key)
    stream = rules_stream(scope, flag_key)
    head = await service.stream_head(stream)
    return RulesOut(stream=stream, version=head.version, rules=list((head.value or {}).get("rules") or ()))


# --- the system's rules ---------------------------------------------------------------------------------------


@router.put(SYSTEM, summary="Set the system's targeting rules", status_code=201, response_model=ChangeResult)
async def set_system_rules(
    scope: SystemScope, flag_key: FlagKeyPath, body: RulesRequest, service: Service, caller: Caller, response: Response
) -> ChangeResult:
    return await _set(scope, flag_key, body, service, caller, response)


@router.delete(SYSTEM, summary="Clear the system's targeting rules", status_code=201, response_model=ChangeResult)
async def clear_system_rules(
    scope: SystemScope,
    flag_key: FlagKeyPath,
    body: ClearRulesRequest,
    service: Service,
    caller: Caller,
    response: Response,
) -> ChangeResult:
    return await _clear(scope, flag_key, body, service, caller, response)


@reads.get(SYSTEM, summary="The system's targeting rules", response_model=RulesOut)
async def get_system_rules(scope: SystemScope, flag_key: FlagKeyPath, service: Service, caller: Caller) -> RulesOut:
    authorize(caller, Action.READ_CATALOG)  # the system level is the catalogue every org reads
    return await _read(scope, flag_key, service)


# --- an org's rules -------------------------------------------------------------------------------------------


@router.put(ORG, summary="Set an org's targeting rules", status_code=201, response_model=ChangeResult)
async def set_org_rules(
    scope: OrgScope, flag_key: FlagKeyPath, body: RulesRequest, service: Service, caller: Caller, response: Response
) -> ChangeResult:
    return await _set(scope, flag_key, body, service, caller, response)


@router.delete(ORG, summary="Clear an org's targeting rules", status_code=201, response_model=ChangeResult)
async def clear_org_rules(
    scope: OrgScope,
    flag_key: FlagKeyPath,
    body: ClearRulesRequest,
    service: Service,
    caller: Caller,
    response: Response,
) -> ChangeResult:
    return await _clear(scope, flag_key, body, service, caller, response)


@reads.get(ORG, summary="An org's targeting rules", response_model=RulesOut)
async def get_org_rules(scope: OrgScope, flag_key: FlagKeyPath, service: Service, caller: Caller) -> RulesOut:
    authorize(caller, Action.READ_AUDIT, org_id=scope.org_id)  # as the org's streams are read
    return await _read(scope, flag_key, service)
