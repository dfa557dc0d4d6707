"""Evaluation: the four levels, highest first, and an answer that says why.

A pure function of (state, context, now). Targeting rules sit inside their level: an org's rules are
tried before the org's own setting (and after a user's or a platform's override), the system's before
the system default; the first rule whose conditions hold decides (`TARGETING_MATCH`, naming it).
A rule's segment conditions read the segments its level sees (`segment_lookup`).
A setting's scheduled steps due by
`now` are applied before it is read, so a scheduled change takes effect at its
instant wherever this runs, with no job to trigger it. An ops flag's kill switch
wins over every level. Never raises into product code: an unknown flag is an
answer with `reason=ERROR` and `error_code=FLAG_NOT_FOUND`, evaluating to off.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from events import Level
from flagcore.bucketing import bucket
from flagcore.model import Catalog, Definition, EventRef, Rules, Segment, Setting, TargetingRule, TenantRules
from flagcore.targeting import Lookup, attributes, first_match
from flagcore.variants import select_variant

ON, OFF = "on", "off"  # the variant of a flag without experiment arms, as flagd names them


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
    TYPE_MISMATCH = "TYPE_MISMATCH"  # asked for another type than the flag's: a typed getter's, never `evaluate`'s


@dataclass(frozen=True, slots=True)
class Evaluation:
    flag_key: str
    value: Any  # the flag's type: bool, str, int, float, or a JSON object/array
    reason: Reason
    level: Level | None = None
    source: EventRef | None = None
    rollout_percentage: int | None = None
    bucket: int | None = None
    error_code: ErrorCode | None = None
    variant: str | None = None  # the variant served (a boolean's "on"/"off" or experiment arm); None on error
    killed: bool = False  # the ops flag's kill switch decided
    rule: str | None = None  # the id of the targeting rule that matched (`level` says whose list)

    def explain(self) -> str:
        """One sentence a support engineer can read out."""
        state = ("on" if self.value else "off") if type(self.value) is bool else f"variant {self.variant}"
        if self.error_code is not None:
            return f"{self.flag_key} is {state}: {self.error_code.value}"
        if self.reason is Reason.DEFAULT:
            return f"{self.flag_key} is {state}: no level sets it, so the built-in default applies"
        if self.killed:
            who = f" by {self.source.actor} ({self.source.reason!r})" if self.source else ""
            return f"{self.flag_key} is {state}: its kill switch is engaged{who}"
        if self.reason is Reason.DISABLED:
            return f"{self.flag_key} is {state}: the flag is archived"
        if self.rule is not None:
            who = f" by {self.source.actor} ({self.source.reason!r})" if self.source else ""
            return f"{self.flag_key} is {state}: {self.level} level, rule {self.rule!r} matched, set{who}"
        if self.reason is not Reason.SPLIT:
            rule = "fixed value"
        elif self.rollout_percentage is None:  # a typed flag's weighted split: the variant says where it fell
            rule = "a weighted split of its variants"
        else:
            rule = f"rollout {self.rollout_percentage}% (bucket {self.bucket})"
        who = f" by {self.source.actor} ({self.source.reason!r})" if self.source else ""
        arm = f", variant {self.variant}" if self.variant not in (ON, OFF) and type(self.value) is bool else ""
        return f"{self.flag_key} is {state}: {self.level} level, {rule}{arm}, set{who}"


def evaluate(
    catalog: Catalog,
    tenant: TenantRules,
    flag_key: str,
    *,
    platform: str | None = None,
    user_id: str | None = None,
    now: datetime | None = None,
    context: Mapping[str, Any] | None = None,
) -> Evaluation:
    """Resolve `flag_key` for the tenant, optionally one of its platforms and users, at `now`.

    `now` defaults to the current time, read only when a setting has a schedule. `context` holds the
    attributes targeting rules read (`flagcore.targeting.attributes`); a flag without rules ignores it.
    """
    definition = catalog.definitions.get(flag_key)
    if definition is None:
        return Evaluation(flag_key, False, Reason.ERROR, error_code=ErrorCode.FLAG_NOT_FOUND)
    off, off_value = definition.off_variant, definition.value_of(definition.off_variant)
    if definition.archived:
        return Evaluation(flag_key, off_value, Reason.DISABLED, Level.SYSTEM, definition.source, variant=off)
    if definition.killed:
        source = definition.source
        return Evaluation(flag_key, off_value, Reason.DISABLED, Level.SYSTEM, source, variant=off, killed=True)
    subject = user_id if user_id is not None else tenant.org_id
    decided = deciding_setting(catalog, tenant, flag_key, platform, user_id, now)
    tried = rules_in_play(catalog, tenant, flag_key, None if decided is None else decided[0])
    if tried:
        attrs = attributes(context, tenant.org_id, platform, user_id)
        for level, rules in tried:
            rule = first_match(rules.rules, attrs, segment_lookup(catalog, tenant, level))
            if rule is not None:
                return targeted(definition, level, rules.source, rule, subject)
    if decided is None:
        return Evaluation(flag_key, off_value, Reason.DEFAULT, variant=off)
    return _decide(definition, decided[0], decided[1], subject)


def rules_in_play(
    catalog: Catalog, tenant: TenantRules, flag_key: str, decided: Level | None
) -> tuple[tuple[Level, Rules], ...]:
    """The rule lists tried, in order, before the setting of level `decided` (None: no level speaks):
    the org's under a user's or platform's override, then the system's under the org's setting."""
    tried: list[tuple[Level, Rules]] = []
    org, system = tenant.rules.get(flag_key), catalog.rules.get(flag_key)
    if org is not None and decided in (None, Level.ORG, Level.SYSTEM):
        tried.append((Level.ORG, org))
    if system is not None and decided in (None, Level.SYSTEM):
        tried.append((Level.SYSTEM, system))
    return tuple(tried)


def segment_lookup(catalog: Catalog, tenant: TenantRules, level: Level) -> Lookup:
    """The segments the rules of `level` see: the system's rules the system's segments; an org's rules the
    org's own, then the system's (an org's segment shadows a system one of the same key, archived or not)."""
    system = catalog.segments
    own = tenant.segments
    if level is Level.SYSTEM or not own:
        return system.get

    def lookup(key: str) -> Segment | None:
        found = own.get(key)
        return found if found is not None else system.get(key)

    return lookup


def targeted(
    definition: Definition, level: Level, source: EventRef | None, rule: TargetingRule, subject: str
) -> Evaluation:
    """The answer of a matching rule: its variant, or the subject's arm of its split (as a level's split)."""
    variant = served(definition, Setting(True, None, variant=rule.variant, split=rule.split), subject)
    value = definition.value_of(variant)
    return Evaluation(definition.key, value, Reason.TARGETING_MATCH, level, source, variant=variant, rule=rule.id)


def deciding_setting(
    catalog: Catalog,
    tenant: TenantRules,
    flag_key: str,
    platform: str | None,
    user_id: str | None,
    now: datetime | None,
) -> tuple[Level, Setting] | None:
    """The highest level that says something about the flag, with its setting in force at `now`."""
    for level, setting in _candidates(catalog, tenant, flag_key, platform, user_id):
        if setting is None:
            continue
        if setting.schedule:
            now = now if now is not None else datetime.now(UTC)
            setting = setting.in_force(now)
        if not setting.speaks:
            continue
        return level, setting
    return None


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


def _decide(definition: Definition, level: Level, setting: Setting, subject: str) -> Evaluation:
    flag_key = definition.key
    fixed = Reason.STATIC if level is Level.SYSTEM else Reason.TARGETING_MATCH
    off = definition.off_variant
    if setting.enabled is False:
        return Evaluation(flag_key, definition.value_of(off), fixed, level, setting.source, variant=off)
    pct = setting.rollout_percentage
    if pct is None:
        variant = served(definition, setting, subject)
        reason = Reason.SPLIT if setting.split is not None else fixed
        return Evaluation(flag_key, definition.value_of(variant), reason, level, setting.source, variant=variant)
    b = bucket(flag_key, subject)
    on = pct > 0 and b <= pct
    variant = served(definition, setting, subject) if on else off
    value = definition.value_of(variant)
    return Evaluation(flag_key, value, Reason.SPLIT, level, setting.source, pct, b, variant=variant)


def served(definition: Definition, setting: Setting, subject: str) -> str:
    """The variant a subject the level turns on is served: the level's variant, its split's arm for the
    subject, the experiment's arm (a boolean experiment), or the flag's default variant ("on" for a boolean).

    A variant the definition no longer names serves the default.
    """
    if setting.variant is not None:
        return setting.variant if definition.known(setting.variant) else definition.default_variant
    arms = setting.split if setting.split is not None else definition.variants
    if not arms:
        return definition.default_variant
    chosen = select_variant(definition.key, subject, arms)
    if chosen is None or not definition.known(chosen.name):
        return definition.default_variant
    return chosen.name


def evaluate_all(
    catalog: Catalog,
    tenant: TenantRules,
    *,
    platform: str | None = None,
    user_id: str | None = None,
    now: datetime | None = None,
    context: Mapping[str, Any] | None = None,
) -> list[Evaluation]:
    at = now if now is not None else datetime.now(UTC)
    return [
        evaluate(catalog, tenant, key, platform=platform, user_id=user_id, now=at, context=context)
        for key in sorted(catalog.definitions)
    ]
