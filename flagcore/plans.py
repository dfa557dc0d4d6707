"""Evaluation compiled: for one tenant and flag, every answer it can give and which one a subject gets.

`evaluate` walks four levels and builds an `Evaluation` on every call. For one
tenant and flag, and a subject without a user override of its own, what decides
is fixed by the catalogue and the tenant's org and platform settings until one of
them changes or a scheduled step falls due: per platform (or none) the answer is a
constant, one sticky-bucket compare between two answers, or an experiment arm.
`compile_flag` asks `evaluate` once per platform the tenant overrides (and once for
any other) and keeps, per platform, a `Rule`: its possible answers and the
subject → answer function. The query service renders a rule's answers once and
serves them; the SDK calls a rule's `enabled`. Neither re-derives a rule of
evaluation: a new rule is written in `evaluate` and compiled here.

A plan is good from `since` until `until` (seconds since the epoch), the first
scheduled instant of the settings it read; a subject in `users` (a user with an
override of the flag) is never answered from it: the caller evaluates in full.
tests/unit/test_core_plans.py checks plans against `evaluate` on generated logs.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from flagcore.bucketing import rollout_test
from flagcore.evaluation import OFF, ON, Evaluation, Reason, evaluate
from flagcore.model import Catalog, Definition, Setting, TenantRules
from flagcore.variants import select_variant

__all__ = ["FlagPlan", "Rule", "compile_flag", "first_change"]

Pick = Callable[[str], int]  # subject → index into a rule's outcomes


@dataclass(frozen=True, slots=True)
class Rule:
    """How the flag resolves on one platform (or none) for a subject without a user override.

    `outcomes[pick(subject)]` is `evaluate`'s answer for that subject but for the rollout bucket, which is
    the subject's own (`flagcore.bucket`) and left None; `enabled(subject)` is its value, with at most one
    hash. A fixed rule has one outcome. Otherwise outcome 0 is off (outside the rollout), 1 is on without an
    arm and 2… are the experiment's arms in name order.
    """

    outcomes: tuple[Evaluation, ...]
    pick: Pick
    enabled: Callable[[str], bool]
    fixed: bool


@dataclass(frozen=True, slots=True)
class FlagPlan:
    """One flag's rules for one tenant, good from `since` until `until` for subjects not in `users`."""

    flag_key: str
    default: Rule
    platforms: Mapping[str, Rule]
    users: frozenset[str]
    since: float
    until: float

    def rule(self, platform: str | None) -> Rule:
        return self.default if platform is None else self.platforms.get(platform, self.default)


def compile_flag(catalog: Catalog, tenant: TenantRules, flag_key: str, at: float) -> FlagPlan:
    """The flag's plan for `tenant` at `at` (seconds since the epoch); an unknown flag has a fixed one."""
    now = datetime.fromtimestamp(at, UTC)
    without_users = TenantRules(tenant.org_id, tenant.org, tenant.platform, {})
    definition = catalog.definitions.get(flag_key)
    platforms = [p for p, key in tenant.platform if key == flag_key]

    def rule(platform: str | None) -> Rule:
        return _rule(evaluate(catalog, without_users, flag_key, platform=platform, now=now), definition)

    settings = [catalog.system.get(flag_key), tenant.org.get(flag_key)]
    settings += [tenant.platform[p, flag_key] for p in platforms]
    return FlagPlan(
        flag_key,
        rule(None),
        {p: rule(p) for p in platforms},
        frozenset(u for u, key in tenant.user if key == flag_key),
        at,
        first_change(settings, now),
    )


def _rule(base: Evaluation, definition: Definition | None) -> Rule:
    variants = definition.variants if definition is not None else ()
    split = base.reason is Reason.SPLIT
    if not split and (not base.value or not variants):  # the same answer whoever asks: no bucket, no arm
        value = base.value
        return Rule((base,), _zero, lambda subject: value, True)
    on = replace(base, value=True, bucket=None)
    arms = sorted({v.name for v in variants} - {ON})
    off = replace(on, value=False, variant=OFF)
    outcomes = (off, replace(on, variant=ON), *[replace(on, variant=name) for name in arms])
    index = {ON: 1} | {name: 2 + i for i, name in enumerate(arms)}
    flag_key = base.flag_key

    def arm(subject: str) -> int:
        chosen = select_variant(flag_key, subject, variants)
        return 1 if chosen is None else index[chosen.name]

    if not split:  # an experiment that is on: the subject's arm decides
        return Rule(outcomes, arm, _true, False)
    assert base.rollout_percentage is not None
    inside = rollout_test(flag_key, base.rollout_percentage)
    if not variants:
        return Rule(outcomes, lambda subject: 1 if inside(subject) else 0, inside, False)
    return Rule(outcomes, lambda subject: arm(subject) if inside(subject) else 0, inside, False)


def _zero(subject: str) -> int:
    return 0


def _true(subject: str) -> bool:
    return True


def first_change(settings: Iterable[Setting | None], now: datetime) -> float:
    """The first scheduled instant after `now` among `settings` (infinity: none), in seconds since the epoch."""
    due = [t for s in settings if s is not None and (t := s.next_change(now)) is not None]
    return min(due).timestamp() if due else math.inf
