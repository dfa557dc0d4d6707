"""OFREP, the OpenFeature Remote Evaluation Protocol: its request and answer shapes over our evaluation.

Both HTTP layers (the FastAPI routes in `ofrep_api` and the ASGI fast path in
`fastpath`) call `evaluate_flag` and `evaluate_flags` here, so they cannot
answer differently. The caller is already authenticated; this module decides
the org (from the key, or from the context for a system-wide key), the
platform and user (from the context), and turns our `Evaluation` into OFREP's
`{key, value, reason, variant, metadata}`.

Evaluation context attributes (docs/ofrep.md):
- `targetingKey`: the user id (optional: without it, a rollout buckets the org, as the native API does);
- `platform`: one of the ad platforms (optional);
- `org`: the organisation; optional for an org-scoped key (which may only name its own),
  required for a system-wide key.
Every other attribute is the context targeting rules read (`services.query.contexts`: checked here,
a bad one is `400 INVALID_CONTEXT` naming it); a flag without rules never looks at it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from events.vocabulary import ORG_ID_RE, USER_ID_RE
from flagcore import Evaluation, Reason
from services.auth.policy import Action, Principal, authorize, authorize_role
from services.observability.tally import Exposures
from services.query import contexts, validation
from services.query.changes_stream import event_streams
from services.query.contexts import Context
from services.query.errors import InvalidParameter, Unavailable, UnknownFlag
from services.query.ofrep_code_defaults import deferred
from services.query.ofrep_metadata import more_metadata

__all__ = [
    "MAX_BODY",
    "REASONS",
    "Answer",
    "Evaluator",
    "Target",
    "bulk_answer",
    "conditional",
    "evaluate_flag",
    "evaluate_flags",
    "render",
    "target",
]

MAX_BODY = 64 * 1024  # an evaluation context is a handful of attributes
PARSE_ERROR = "PARSE_ERROR"
TARGETING_KEY_MISSING = "TARGETING_KEY_MISSING"
INVALID_CONTEXT = "INVALID_CONTEXT"
FLAG_NOT_FOUND = "FLAG_NOT_FOUND"
GENERAL = "GENERAL"

# Every reason of the core, as OFREP names it (a unit test checks none is missing).
REASONS: dict[Reason, str] = {
    Reason.STATIC: "STATIC",
    Reason.TARGETING_MATCH: "TARGETING_MATCH",
    Reason.SPLIT: "SPLIT",
    Reason.DISABLED: "DISABLED",
    Reason.DEFAULT: "DEFAULT",
    Reason.ERROR: "ERROR",
}


class Evaluator(Protocol):
    """What OFREP needs of `QueryService`."""

    async def evaluate(
        self, org_id: str, flag_key: str, *, platform: str | None, user_id: str | None, context: Context = None
    ) -> Evaluation: ...

    async def evaluate_all(
        self, org_id: str, *, platform: str | None, user_id: str | None, context: Context = None
    ) -> list[Evaluation]: ...


@dataclass(frozen=True, slots=True)
class Answer:
    """An HTTP answer, ready to send: the body is JSON bytes (empty for 304)."""

    status: int
    body: bytes
    etag: str | None = None
    # A finished answer's evaluations, counted each time it is served; not part of the answer's equality.
    exposures: Exposures | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class Target:
    """Whom to evaluate for: the org (authorised), and optionally a platform and a user."""

    org_id: str
    platform: str | None
    user_id: str | None
    context: Context = None  # the attributes targeting rules read; None: the call's own only


OWN_ATTRIBUTES = frozenset({"targetingKey", "platform", "org"})  # the call's target, not attributes rules read


class _Refused(Exception):
    """A request OFREP answers with an error code rather than an evaluation."""

    def __init__(self, status: int, code: str, details: str) -> None:
        super().__init__(details)
        self.status = status
        self.code = code
        self.details = details


def target(principal: Principal, body: bytes) -> Target:
    """Parse the request body and decide the org; `Forbidden` (uniform) for another org than the key's."""
    if len(body) > MAX_BODY:
        raise _Refused(413, PARSE_ERROR, f"the request body exceeds {MAX_BODY} bytes")
    context = _context(body)
    org = principal.org_id
    named = context.get("org")
    if named is not None:
        if not isinstance(named, str) or not ORG_ID_RE.fullmatch(named):
            raise _Refused(400, INVALID_CONTEXT, f"context.org must be a string matching {ORG_ID_RE.pattern}")
        org = named
    if org is None:
        raise _Refused(400, INVALID_CONTEXT, "context.org is required: a system-wide key evaluates for the org named")
    authorize(principal, Action.EVALUATE, org_id=org)
    return Target(org, _platform(context.get("platform")), _user(context), _attributes(context))


def _attributes(context: Mapping[str, Any]) -> Context:
    if len(context) <= len(OWN_ATTRIBUTES) and OWN_ATTRIBUTES.issuperset(context):
        return None  # the common case: nothing beyond the target, nothing to check
    try:
        return contexts.attributes(context, skip=OWN_ATTRIBUTES)
    except InvalidParameter as exc:
        raise _Refused(400, INVALID_CONTEXT, exc.detail) from exc


def _context(body: bytes) -> Mapping[str, Any]:
    if not body.strip():
        return {}
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise _Refused(400, PARSE_ERROR, f"the request body is not JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise _Refused(400, PARSE_ERROR, "the request body must be a JSON object")
    context = document.get("context")
    if context is None:
        return {}
    if not isinstance(context, dict):
        raise _Refused(400, PARSE_ERROR, "context must be a JSON object")
    return context


def _platform(value: Any) -> str | None:
    if value is not None and not isinstance(value, str):
        raise _Refused(400, INVALID_CONTEXT, "context.platform must be a string")
    try:
        return validation.platform(value, "context.platform")
    except InvalidParameter as exc:
        raise _Refused(400, INVALID_CONTEXT, exc.detail) from exc


def _user(context: Mapping[str, Any]) -> str | None:
    if "targetingKey" not in context:
        return None
    value = context["targetingKey"]
    if value is None or value == "":
        raise _Refused(400, TARGETING_KEY_MISSING, "context.targetingKey is empty: name the user, or omit it")
    if not isinstance(value, str) or not USER_ID_RE.fullmatch(value):
        raise _Refused(400, INVALID_CONTEXT, f"context.targetingKey must be a string matching {USER_ID_RE.pattern}")
    return value


def _success(e: Evaluation) -> dict[str, Any]:
    metadata: dict[str, Any] = {}
    if e.level is not None:
        metadata["level"] = e.level.value
    if e.source is not None:
        metadata["eventId"] = e.source.event_id
        metadata["version"] = e.source.version
    if e.rollout_percentage is not None:
        metadata["rolloutPercentage"] = e.rollout_percentage
    if e.killed:
        metadata["killSwitch"] = True
    metadata.update(more_metadata(e))  # services.query.ofrep_metadata
    if e.rule is not None:
        metadata["rule"] = e.rule  # the targeting rule that matched (`level` says whose list)
    reason = REASONS[e.reason]
    answer = {"key": e.flag_key, "value": e.value, "reason": reason, "variant": e.variant, "metadata": metadata}
    if deferred(e):  # services.query.ofrep_code_defaults: OFREP's codeDefaultFlag, when configured
        del answer["value"]
    return answer


def render(e: Evaluation) -> bytes:
    """One flag's OFREP answer as JSON bytes (a bulk answer's `flags` hold the same objects)."""
    return orjson.dumps(_success(e))


def _failure(status: int, code: str, details: str, key: str | None) -> Answer:
    body: dict[str, Any] = {} if key is None else {"key": key}
    body["errorCode"] = code
    body["errorDetails"] = details
    return Answer(status, orjson.dumps(body))


async def evaluate_flag(service: Evaluator, principal: Principal, key: str, body: bytes) -> Answer:
    """`POST /ofrep/v1/evaluate/flags/{key}`."""
    authorize_role(principal, Action.EVALUATE)  # a role that never evaluates learns nothing about the body
    try:
        who = target(principal, body)
        try:
            flag = validation.flag_key(key, "key")
        except InvalidParameter as exc:
            raise _Refused(404, FLAG_NOT_FOUND, exc.detail) from exc
        result = await service.evaluate(
            who.org_id, flag, platform=who.platform, user_id=who.user_id, context=who.context
        )
    except _Refused as exc:
        return _failure(exc.status, exc.code, exc.details, key)
    except UnknownFlag as exc:
        return _failure(404, FLAG_NOT_FOUND, str(exc), key)
    except Unavailable as exc:
        return _failure(503, GENERAL, f"{exc.dependency} is unavailable", key)
    return Answer(200, render(result))


async def evaluate_flags(service: Evaluator, principal: Principal, body: bytes, if_none_match: str | None) -> Answer:
    """`POST /ofrep/v1/evaluate/flags`: every flag and the org's `eventStreams`, with an ETag; 304 when the caller
    holds this answer."""
    authorize_role(principal, Action.EVALUATE)
    try:
        who = target(principal, body)
        results = await service.evaluate_all(
            who.org_id, platform=who.platform, user_id=who.user_id, context=who.context
        )
    except _Refused as exc:
        return _failure(exc.status, exc.code, exc.details, None)
    except Unavailable as exc:
        return _failure(503, GENERAL, f"{exc.dependency} is unavailable", None)
    flags = [_success(e) for e in results]
    payload = {"flags": flags, "eventStreams": orjson.Fragment(event_streams(who.org_id))}  # changes_stream
    return conditional(bulk_answer(orjson.dumps(payload)), if_none_match)


def bulk_answer(payload: bytes) -> Answer:
    """The bulk route's 200: `{"flags": [...]}` and its ETag."""
    return Answer(200, payload, '"' + hashlib.blake2b(payload, digest_size=12).hexdigest() + '"')


def conditional(answer: Answer, if_none_match: str | None) -> Answer:
    """A 304 for a caller that holds this answer already (its ETag listed), else the answer itself."""
    if if_none_match is not None and answer.etag is not None and _matches(if_none_match, answer.etag):
        return Answer(304, b"", answer.etag, answer.exposures)
    return answer


def _matches(if_none_match: str, etag: str) -> bool:
    """RFC 9110's weak comparison: any listed tag (or `*`) equal to ours, `W/` ignored."""
    for candidate in if_none_match.split(","):
        tag = candidate.strip()
        if tag == "*" or tag.removeprefix("W/") == etag:
            return True
    return False
