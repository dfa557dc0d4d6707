"""An OpenFeature provider over `FlagClient`: switch an `openfeature-sdk` app to flagstream in one line.

    api.set_provider(FlagstreamProvider(FlagClient(...)))

Context: `targeting_key` is the user; the attribute `platform` names one of the
org's ad platforms; an `org` attribute, when given, must be the client's own org
(the org comes from the key, a context cannot move it). Every other attribute
(email, plan, country, app_version, ip, any custom one) is what targeting rules
read; a datetime attribute is read as its ISO 8601 instant. All five OpenFeature
types resolve: a flag asked for as another type than its own resolves to the
caller's default with TYPE_MISMATCH. Never raises (evaluation API requirements
1.3, 1.4): every error is the caller's default with `reason=ERROR` and an error code.
A matching rule's id is in the flag metadata (`rule`), beside the deciding `level`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from openfeature.evaluation_context import EvaluationContext
from openfeature.exception import ErrorCode
from openfeature.flag_evaluation import FlagResolutionDetails, Reason
from openfeature.provider import AbstractProvider, Metadata

from events import Platform, ValueType
from flagcore import ErrorCode as CoreErrorCode
from flagsdk.client import FlagClient

PLATFORMS = frozenset(p.value for p in Platform)
ERROR_CODES = {
    CoreErrorCode.FLAG_NOT_FOUND: ErrorCode.FLAG_NOT_FOUND,
    CoreErrorCode.TYPE_MISMATCH: ErrorCode.TYPE_MISMATCH,
}
JsonObject = Sequence[Any] | Mapping[str, Any]


class FlagstreamProvider(AbstractProvider):
    def __init__(self, client: FlagClient) -> None:
        super().__init__()
        self.client = client

    def get_metadata(self) -> Metadata:
        return Metadata(name="flagstream in-process")

    def shutdown(self) -> None:
        self.client.close()

    def resolve_boolean_details(
        self, flag_key: str, default_value: bool, evaluation_context: EvaluationContext | None = None
    ) -> FlagResolutionDetails[bool]:
        return self._resolve(flag_key, ValueType.BOOLEAN, default_value, evaluation_context)

    def resolve_string_details(
        self, flag_key: str, default_value: str, evaluation_context: EvaluationContext | None = None
    ) -> FlagResolutionDetails[str]:
        return self._resolve(flag_key, ValueType.STRING, default_value, evaluation_context)

    def resolve_integer_details(
        self, flag_key: str, default_value: int, evaluation_context: EvaluationContext | None = None
    ) -> FlagResolutionDetails[int]:
        return self._resolve(flag_key, ValueType.INTEGER, default_value, evaluation_context)

    def resolve_float_details(
        self, flag_key: str, default_value: float, evaluation_context: EvaluationContext | None = None
    ) -> FlagResolutionDetails[float]:
        return self._resolve(flag_key, ValueType.FLOAT, default_value, evaluation_context)

    def resolve_object_details(
        self,
        flag_key: str,
        default_value: JsonObject,
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[JsonObject]:
        return self._resolve(flag_key, ValueType.OBJECT, default_value, evaluation_context)

    def _resolve(
        self, flag_key: str, kind: ValueType, default: Any, evaluation_context: EvaluationContext | None
    ) -> FlagResolutionDetails[Any]:
        try:
            return self._details(flag_key, kind, default, evaluation_context or EvaluationContext())
        except Exception as exc:  # never into product code: an unforeseen failure is the default, GENERAL
            return _error(default, ErrorCode.GENERAL, f"{type(exc).__name__}: {exc}")

    def _details(
        self, flag_key: str, kind: ValueType, default: Any, context: EvaluationContext
    ) -> FlagResolutionDetails[Any]:
        attributes = context.attributes or {}
        platform = attributes.get("platform")
        if platform is not None and (not isinstance(platform, str) or platform not in PLATFORMS):
            return _error(default, ErrorCode.INVALID_CONTEXT, f"platform must be one of {sorted(PLATFORMS)}")
        org = attributes.get("org")
        if org is not None and org != self.client.org_id:
            return _error(default, ErrorCode.INVALID_CONTEXT, "the context names another org than the key's")
        user = context.targeting_key
        r = self.client.resolve(flag_key, kind, default, platform=platform, user=user, context=_attributes(attributes))
        if r.error_code is not None:
            return _error(default, ERROR_CODES[r.error_code], _message(flag_key, r.error_code, kind))
        metadata: dict[str, str] = {} if r.level is None else {"level": r.level.value}
        if r.rule is not None:
            metadata["rule"] = r.rule
        return FlagResolutionDetails(r.value, reason=Reason(r.reason.value), variant=r.variant, flag_metadata=metadata)


def _attributes(attributes: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The context rules read: OpenFeature's attributes as they are (`platform` and `org` are the call's own,
    `flagcore.targeting` ignores them there), a datetime as its ISO 8601 instant (what `before`/`after` read)."""
    if not attributes:
        return None
    if any(type(v) is datetime for v in attributes.values()):
        return {k: v.isoformat() if type(v) is datetime else v for k, v in attributes.items()}
    return attributes


def _message(flag_key: str, code: CoreErrorCode, kind: ValueType) -> str:
    if code is CoreErrorCode.FLAG_NOT_FOUND:
        return f"no flag {flag_key!r}"
    return f"flag {flag_key!r} is not a {kind.value} flag"


def _error(default: Any, code: ErrorCode, message: str) -> FlagResolutionDetails[Any]:
    return FlagResolutionDetails(default, error_code=code, error_message=message, reason=Reason.ERROR)
