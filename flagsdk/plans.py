"""Per-flag plans for `is_enabled`: the hot path, derived from `flagcore.evaluate`, never re-implemented.

`flagcore.evaluate` walks four levels and builds an answer with its reason and
variant on every call. For one org most flags have no platform or user override,
so the value for any subject is either fixed or one sticky-bucket compare. A plan
asks `flagcore.evaluate` once, for the org itself, and keeps what the value
depends on: a constant, or the rollout percentage to compare the bucket against.
Subjects with an override of their own (a user, a platform) go through
`flagcore.evaluate` in full, and so does everything once a scheduled step of the
flag falls due (a plan is only good until then). Plans are rebuilt after every
applied change; tests/unit/test_sdk_plans.py checks them against `flagcore.evaluate`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime

import mmh3

from flagcore import FlagState, Reason, evaluate

Plan = Callable[[str | None, str | None], bool]  # (platform, user) → value


def compile_plan(state: FlagState, org_id: str, flag_key: str, now: datetime) -> Plan:
    catalog = state.catalog
    tenant = state.tenant(org_id)
    base = evaluate(catalog, tenant, flag_key, now=now)  # no platform, no user: the org is the subject
    if base.reason is Reason.SPLIT:
        assert base.rollout_percentage is not None
        plan = _split(flag_key, org_id, base.rollout_percentage)
    else:
        plan = _constant(base.value)

    def full(platform: str | None, user: str | None) -> bool:
        return evaluate(catalog, tenant, flag_key, platform=platform, user_id=user).value

    users = frozenset(u for u, f in tenant.user if f == flag_key)
    platforms = frozenset(p for p, f in tenant.platform if f == flag_key)
    if users or platforms:
        plan = _with_overrides(plan, full, users, platforms)
    settings = [catalog.system.get(flag_key), tenant.org.get(flag_key)]
    settings += [s for (_, f), s in (*tenant.platform.items(), *tenant.user.items()) if f == flag_key]
    due = [t for s in settings if s is not None and (t := s.next_change(now)) is not None]
    if due:
        plan = _until(min(due).timestamp(), plan, full)
    return plan


def _constant(value: bool) -> Plan:
    def constant(platform: str | None, user: str | None) -> bool:
        return value

    return constant


def _split(flag_key: str, org_id: str, percentage: int) -> Plan:
    # flagcore.bucket is murmur3("{flag}:{subject}") % 100 + 1 and the subject is in when
    # bucket <= percentage, i.e. hash % 100 < percentage: inlined, one call instead of three.
    prefix = f"{flag_key}:"
    org_key = prefix + org_id
    hash32 = mmh3.hash

    def split(platform: str | None, user: str | None) -> bool:
        return hash32(org_key if user is None else prefix + user, 0, False) % 100 < percentage

    return split


def _with_overrides(plan: Plan, full: Plan, users: frozenset[str], platforms: frozenset[str]) -> Plan:
    def with_overrides(platform: str | None, user: str | None) -> bool:
        if (user is not None and user in users) or (platform is not None and platform in platforms):
            return full(platform, user)
        return plan(platform, user)

    return with_overrides


def _until(deadline: float, plan: Plan, full: Plan) -> Plan:
    def scheduled(platform: str | None, user: str | None) -> bool:
        return plan(platform, user) if time.time() < deadline else full(platform, user)

    return scheduled
