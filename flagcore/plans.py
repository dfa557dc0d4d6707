"""Evaluation compiled: for one tenant and flag, every answer it can give and which one a user gets.

`evaluate` walks four levels and builds an `Evaluation` on every call. For one
tenant and flag, and a user without an override of their own, what decides is
fixed by the catalogue and the tenant's org and platform settings until one of
them changes or a scheduled step falls due: per platform (or none) the answer is a
constant, one sticky-bucket compare between two answers, or an experiment arm.
`compile_flag` asks `evaluate` once per platform the tenant overrides (and once for
any other) and keeps, per platform, a `Rule`: its possible answers and the
user → answer function. The query service renders a rule's answers once and serves
them; the SDK calls the plan's `enabled`. Neither re-derives a rule of evaluation:
a new rule is written in `evaluate` and compiled here.

Every compiled function takes the user (None: the tenant itself is the subject,
as in `evaluate`). A plan's rules are good from `since` until `until` (seconds
since the epoch), the first scheduled instant of the settings they read, for users
not in `users` (those with an override of the flag); `enabled` is good always: it
evaluates in full for those users and past `until`.
tests/unit/test_core_plans.py checks plans against `evaluate` on generated logs.

Targeting rules compile into a rule's `targets`, tried in order before its outcomes: each keeps its
test of the context (`flagcore.targeting.compiled`: regexes compiled, versions and networks parsed
once) and its answers, one per variant it can serve. `answer(user, platform, context)` is
`evaluate`'s answer with a context (but the bucket); `enabled` without one, as before.
tests/unit/test_targeting_plans.py checks them against `evaluate` on generated rules and contexts.

A rule naming segments is compiled with the segments as they are when the plan is made (a member list is
a set, tested in one lookup): a change of a segment is a change of every plan of the segment's scope (the
system's: every org's), which the holder of plans must recompile, as for any other change of the state.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

from events import Level
from flagcore.bucketing import rollout_test
from flagcore.evaluation import (
    Evaluation,
    deciding_setting,
    evaluate,
    rules_in_play,
    segment_lookup,
    served,
    targeted,
)
from flagcore.model import Catalog, Definition, EventRef, Setting, TargetingRule, TenantRules, Variant
from flagcore.targeting import Lookup, Test, attributes, test_of
from flagcore.variants import select_variant

__all__ = ["Answer", "Enabled", "FlagPlan", "Pick", "Rule", "Target", "compile_flag", "first_change"]

Pick = Callable[[str | None], int]  # user → index into a rule's outcomes
Enabled = Callable[[str | None, str | None], Any]  # (user, platform) → value (a boolean flag's: on/off)
Answer = Callable[[str | None, str | None, Mapping[str, Any] | None], Evaluation]


@dataclass(frozen=True, slots=True)
class Rule:
    """How the flag resolves on one platform (or none) for a user without an override of their own.

    `outcomes[pick(user)]` is `evaluate`'s answer for that user but for the rollout bucket, which is the
    subject's own (`flagcore.bucket`) and left None; `enabled(user)` is its value, with at most one hash
    (its second parameter, the platform, is the plan's and ignored: a rule is one platform's). A fixed rule
    has one outcome. Otherwise outcome 0 is the off variant (outside the rollout), 1 the flag's default
    variant (on without an arm: a boolean's "on") and 2… the other variants of the level's split, or of
    the experiment's arms, in name order.
    """

    outcomes: tuple[Evaluation, ...]
    pick: Pick
    enabled: Enabled
    fixed: bool
    targets: tuple[Target, ...] = ()  # targeting rules tried first; `outcomes` answer when none holds

    def answer(self, user: str | None, attrs: Mapping[str, Any]) -> Evaluation:
        """`evaluate`'s answer (but the bucket) for a user without an override and these attributes."""
        for target in self.targets:
            if target.holds(attrs):
                return target.outcomes[target.pick(user)]
        return self.outcomes[self.pick(user)]


@dataclass(frozen=True, slots=True)
class Target:
    """A targeting rule compiled for one tenant and flag: its test, and its answers (`outcomes[pick(user)]`)."""

    rule: str
    holds: Test
    outcomes: tuple[Evaluation, ...]
    pick: Pick


@dataclass(frozen=True, slots=True)
class FlagPlan:
    """One flag's rules for one tenant, and `enabled(user, platform)`: `evaluate(...).value`, compiled."""

    flag_key: str
    default: Rule
    platforms: Mapping[str, Rule]
    users: frozenset[str]
    since: float
    until: float
    enabled: Enabled
    answer: Answer  # (user, platform, context) → `evaluate(..., context=...)` but the bucket, good always

    def rule(self, platform: str | None) -> Rule:
        return self.default if platform is None else self.platforms.get(platform, self.default)


def compile_flag(catalog: Catalog, tenant: TenantRules, flag_key: str, at: float) -> FlagPlan:
    """The flag's plan for `tenant` at `at` (seconds since the epoch); an unknown flag has a fixed one."""
    now = datetime.fromtimestamp(at, UTC)
    without_users = TenantRules(tenant.org_id, tenant.org, tenant.platform, {})  # nor the org's rules
    bare = Catalog(catalog.definitions, catalog.system)  # the catalogue without its rules: when none holds
    definition = catalog.definitions.get(flag_key)
    live = definition is not None and not definition.archived and not definition.killed
    platforms = [p for p, key in tenant.platform if key == flag_key]

    def rule(platform: str | None) -> Rule:
        base = evaluate(bare, without_users, flag_key, platform=platform, now=now)
        decided = deciding_setting(catalog, without_users, flag_key, platform, None, now) if live else None
        plain = _rule(base, definition, None if decided is None else decided[1], tenant.org_id)
        tried = rules_in_play(catalog, tenant, flag_key, None if decided is None else decided[0]) if live else ()
        if definition is None or not tried:
            return plain
        targets = tuple(
            _target(definition, lv, rs.source, r, tenant.org_id, segment_lookup(catalog, tenant, lv))
            for lv, rs in tried
            for r in rs.rules
        )
        return _with_targets(plain, targets, tenant.org_id)

    settings = [catalog.system.get(flag_key), tenant.org.get(flag_key)]
    settings += [tenant.platform[p, flag_key] for p in platforms]
    default = rule(None)
    rules = {p: rule(p) for p in platforms}
    users = frozenset(u for u, key in tenant.user if key == flag_key)
    until = first_change(settings, now)
    if not rules and not users and until == math.inf:
        enabled = default.enabled  # the plain case: one call, one hash at most
    else:
        enabled = _dispatch(catalog, tenant, flag_key, default, rules, users, until)

    def answer(user: str | None, platform: str | None, context: Mapping[str, Any] | None = None) -> Evaluation:
        if (user is not None and user in users) or time.time() >= until:
            full = evaluate(catalog, tenant, flag_key, platform=platform, user_id=user, context=context)
            return replace(full, bucket=None)
        chosen = default if platform is None else rules.get(platform, default)
        return chosen.answer(user, attributes(context, tenant.org_id, platform, user) if chosen.targets else _NONE)

    return FlagPlan(flag_key, default, rules, users, at, until, enabled, answer)


def _with_targets(plain: Rule, targets: tuple[Target, ...], tenant_id: str) -> Rule:
    """`plain` with targeting rules tried first; its `enabled` (no context) tests them on the call's own
    attributes (org, platform, user), as `evaluate` does without a context."""
    targeted_rule = replace(plain, targets=targets, fixed=False)

    def enabled(user: str | None, platform: str | None = None) -> Any:
        return targeted_rule.answer(user, attributes(None, tenant_id, platform, user)).value

    return replace(targeted_rule, enabled=enabled)


def _target(
    definition: Definition, level: Level, source: EventRef | None, rule: TargetingRule, tenant_id: str, lookup: Lookup
) -> Target:
    """A targeting rule's compiled form: one answer for a variant, one per variant a split can serve."""
    template = targeted(definition, level, source, rule, tenant_id)
    holds = test_of(rule, lookup)
    if rule.split is None:
        return Target(rule.id, holds, (template,), _zero)
    names = sorted({a.name for a in rule.split if definition.known(a.name)} | {definition.default_variant})
    outcomes = tuple(replace(template, value=definition.value_of(n), variant=n) for n in names)
    index = {n: i for i, n in enumerate(names)}
    setting = Setting(True, None, split=rule.split)

    def pick(user: str | None) -> int:
        return index[served(definition, setting, tenant_id if user is None else user)]

    return Target(rule.id, holds, outcomes, pick)


def _dispatch(
    catalog: Catalog,
    tenant: TenantRules,
    flag_key: str,
    default: Rule,
    rules: dict[str, Rule],
    users: frozenset[str],
    until: float,
) -> Enabled:
    """`enabled` when there is more to it than the default rule: a platform's rule, or `evaluate` in full."""
    by_platform = {p: r.enabled for p, r in rules.items()}
    plain = default.enabled

    def enabled(user: str | None, platform: str | None = None) -> Any:
        if (user is not None and user in users) or time.time() >= until:
            return evaluate(catalog, tenant, flag_key, platform=platform, user_id=user).value
        return (plain if platform is None else by_platform.get(platform, plain))(user, platform)

    return enabled


def _rule(base: Evaluation, definition: Definition | None, setting: Setting | None, tenant_id: str) -> Rule:
    """The rule of `base` (the tenant's own answer), given the setting that decided it (None: no level did)."""
    pct = None if setting is None else setting.rollout_percentage
    arms: tuple[Variant, ...] = ()
    if definition is not None and setting is not None and setting.variant is None:
        arms = setting.split if setting.split is not None else definition.variants
    if definition is None or setting is None or setting.enabled is False or (pct is None and not arms):
        value = base.value  # the same answer whoever asks: no bucket, no arm

        def fixed(user: str | None, platform: str | None = None) -> Any:
            return value

        return Rule((base,), _zero, fixed, True)
    # What a subject inside gets without an arm: the level's variant, else the default (as `served` does).
    fallback = served(definition, setting, tenant_id) if not arms else definition.default_variant
    names = sorted({v.name for v in arms if definition.known(v.name)} - {fallback})
    on = replace(base, bucket=None)
    off = replace(on, value=definition.value_of(definition.off_variant), variant=definition.off_variant)
    outcomes = (off, *[replace(on, value=definition.value_of(n), variant=n) for n in (fallback, *names)])
    index = {fallback: 1} | {name: 2 + i for i, name in enumerate(names)}
    values = tuple(o.value for o in outcomes)
    boolean = values[0] is False and all(v is True for v in values[1:])  # on/off: the value is `inside`
    flag_key = definition.key

    def arm(user: str | None) -> int:
        chosen = select_variant(flag_key, tenant_id if user is None else user, arms)
        return 1 if chosen is None else index.get(chosen.name, 1)

    def valued(pick: Pick) -> Enabled:
        def value(user: str | None, platform: str | None = None) -> Any:
            return values[pick(user)]

        return value

    if pct is None:  # on for everyone: the subject's arm decides
        return Rule(outcomes, arm, _on if boolean else valued(arm), False)
    inside = rollout_test(flag_key, pct, tenant_id)
    if not arms:

        def pick(user: str | None) -> int:
            return 1 if inside(user, None) else 0

    else:

        def pick(user: str | None) -> int:
            return arm(user) if inside(user, None) else 0

    return Rule(outcomes, pick, inside if boolean else valued(pick), False)


_NONE: Mapping[str, Any] = MappingProxyType({})  # the attributes of a rule without targeting rules: never read


def _zero(user: str | None) -> int:
    return 0


def _on(user: str | None, platform: str | None = None) -> Any:
    return True


def first_change(settings: Iterable[Setting | None], now: datetime) -> float:
    """The first scheduled instant after `now` among `settings` (infinity: none), in seconds since the epoch."""
    due = [t for s in settings if s is not None and (t := s.next_change(now)) is not None]
    return min(due).timestamp() if due else math.inf
