"""Evaluation: the four levels, highest first, and an answer that says why.

Never raises into product code: an unknown flag is an answer with
`reason=ERROR` and `error_code=FLAG_NOT_FOUND`, evaluating to off.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from events import Level
from flagcore.bucketing import bucket
from flagcore.model import Catalog, EventRef, Setting, TenantRules


class Reason(StrEnum):
    """OpenFeature's resolution reasons, as OFREP names them."""

    STATIC = "STATIC"
    TARGETING_MATCH = "TARGETING_MATCH"
    SPLIT = "SPLIT"
    DISABLED = "DISABLED"
    DEFAULT = "DEFAULT"
    ERROR = "ERROR"


class ErrorCode(StrEnum):
    FLAG_NOT_FOUND = "FLAG_NOT_FOUND"


@dataclass(frozen=True, slots=True)
class Evaluation:
    flag_key: str
    value: bool
    reason: Reason
    level: Level | None = None
    source: EventRef | None = None
    rollout_percentage: int | None = None
    bucket: int | None = None
    error_code: ErrorCode | None = None

    def explain(self) -> str:
        """One sentence a support engineer can read out."""
        state = "on" if self.value else "off"
        if self.error_code is not None:
            return f"{self.flag_key} is {state}: {self.error_code.value}"
        if self.reason is Reason.DEFAULT:
            return f"{self.flag_key} is {state}: no level sets it, so the built-in default applies"
        if self.reason is Reason.DISABLED:
            return f"{self.flag_key} is {state}: the flag is archived"
        rule = (
            f"rollout {self.rollout_percentage}% (bucket {self.bucket})"
            if self.reason is Reason.SPLIT
            else "fixed value"
        )
        who = f" by {self.source.actor} ({self.source.reason!r})" if self.source else ""
        return f"{self.flag_key} is {state}: {self.level} level, {rule}, set{who}"


def evaluate(
    catalog: Catalog,
    tenant: TenantRules,
    flag_key: str,
    *,
    platform: str | None = None,
    user_id: str | None = None,
) -> Evaluation:
    """Resolve `flag_key` for the tenant, optionally one of its platforms and users."""
    definition = catalog.definitions.get(flag_key)
    if definition is None:
        return Evaluation(flag_key, False, Reason.ERROR, error_code=ErrorCode.FLAG_NOT_FOUND)
    if definition.archived:
        return Evaluation(flag_key, False, Reason.DISABLED, Level.SYSTEM, definition.source)
    subject = user_id if user_id is not None else tenant.org_id
    for level, setting in _candidates(catalog, tenant, flag_key, platform, user_id):
        if setting is None or (setting.enabled is None and setting.rollout_percentage is None):
            continue
        return _decide(flag_key, level, setting, subject)
    return Evaluation(flag_key, False, Reason.DEFAULT)


def _candidates(
    catalog: Catalog,
    tenant: TenantRules,
    flag_key: str,
    platform: str | None,
    user_id: str | None,
) -> tuple[tuple[Level, Setting | None], ...]:
    return (
        (Level.USER, tenant.user.get((user_id, flag_key)) if user_id is not None else None),
        (Level.PLATFORM, tenant.platform.get((platform, flag_key)) if platform is not None else None),
        (Level.ORG, tenant.org.get(flag_key)),
        (Level.SYSTEM, catalog.system.get(flag_key)),
    )


def _decide(flag_key: str, level: Level, setting: Setting, subject: str) -> Evaluation:
    fixed = Reason.STATIC if level is Level.SYSTEM else Reason.TARGETING_MATCH
    if setting.enabled is False:
        return Evaluation(flag_key, False, fixed, level, setting.source)
    pct = setting.rollout_percentage
    if pct is None:
        return Evaluation(flag_key, True, fixed, level, setting.source)
    b = bucket(flag_key, subject)
    return Evaluation(flag_key, pct > 0 and b <= pct, Reason.SPLIT, level, setting.source, pct, b)


def evaluate_all(
    catalog: Catalog,
    tenant: TenantRules,
    *,
    platform: str | None = None,
    user_id: str | None = None,
) -> list[Evaluation]:
    return [
        evaluate(catalog, tenant, key, platform=platform, user_id=user_id)
        for key in sorted(catalog.definitions)
    ]
