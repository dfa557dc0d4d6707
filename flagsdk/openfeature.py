"""An OpenFeature provider over `FlagClient`: switch an `openfeature-sdk` app to flagstream in one line.

    api.set_provider(FlagstreamProvider(FlagClient(...)))

Context: `targeting_key` is the user; the attribute `platform` names one of the
org's ad platforms; an `org` attribute, when given, must be the client's own org
(the org comes from the key, a context cannot move it). Flags are boolean: any
other type resolves to the caller's default with TYPE_MISMATCH. Never raises.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from openfeature.evaluation_context import EvaluationContext
from openfeature.exception import ErrorCode
from openfeature.flag_evaluation import FlagResolutionDetails, Reason
from openfeature.provider import AbstractProvider, Metadata

from events import Platform
from flagcore import ErrorCode as CoreErrorCode
from flagsdk.client import FlagClient

PLATFORMS = frozenset(p.value for p in Platform)


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
        context = evaluation_context or EvaluationContext()
        attributes = context.attributes or {}
        platform = attributes.get("platform")
        if platform is not None and (not isinstance(platform, str) or platform not in PLATFORMS):
            return _error(default_value, ErrorCode.INVALID_CONTEXT, f"platform must be one of {sorted(PLATFORMS)}")
        org = attributes.get("org")
        if org is not None and org != self.client.org_id:
            return _error(default_value, ErrorCode.INVALID_CONTEXT, "the context names another org than the key's")
        r = self.client.evaluate(flag_key, platform=platform, user=context.targeting_key)
        if r.error_code is CoreErrorCode.FLAG_NOT_FOUND:
            return _error(default_value, ErrorCode.FLAG_NOT_FOUND, f"no flag {flag_key!r}")
        metadata: dict[str, str] = {} if r.level is None else {"level": r.level.value}
        return FlagResolutionDetails(r.value, reason=Reason(r.reason.value), variant=r.variant,
                                     flag_metadata=metadata)

    def resolve_string_details(
        self, flag_key: str, default_value: str, evaluation_context: EvaluationContext | None = None
    ) -> FlagResolutionDetails[str]:
        return _mismatch(default_value)

    def resolve_integer_details(
        self, flag_key: str, default_value: int, evaluation_context: EvaluationContext | None = None
    ) -> FlagResolutionDetails[int]:
        return _mismatch(default_value)

    def resolve_float_details(
        self, flag_key: str, default_value: float, evaluation_context: EvaluationContext | None = None
    ) -> FlagResolutionDetails[float]:
        return _mismatch(default_value)

    def resolve_object_details(
        self,
        flag_key: str,
        default_value: Sequence[Any] | Mapping[str, Any],
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[Sequence[Any] | Mapping[str, Any]]:
        return _mismatch(default_value)


def _error(default: Any, code: ErrorCode, message: str) -> FlagResolutionDetails[Any]:
    return FlagResolutionDetails(default, error_code=code, error_message=message, reason=Reason.ERROR)


def _mismatch(default: Any) -> FlagResolutionDetails[Any]:
    return _error(default, ErrorCode.TYPE_MISMATCH, "flagstream flags are boolean")
