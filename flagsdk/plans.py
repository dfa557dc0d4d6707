"""Per-flag checks for `is_enabled`: the hot path, executing `flagcore.plans`, never re-deriving a rule.

A check calls the compiled rule of the subject's platform (one hash at most); a
user with an override of the flag, and every subject once a scheduled step of the
flag falls due, go through `flagcore.evaluate` in full (a check is only good until
then). Checks are made again after every applied change;
tests/unit/test_sdk_plans.py checks them against `flagcore.evaluate`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from flagcore import FlagState, evaluate
from flagcore.plans import compile_flag

Check = Callable[[str | None, str | None], bool]  # (platform, user) → value


def compile_check(state: FlagState, org_id: str, flag_key: str, at: float) -> Check:
    catalog = state.catalog
    tenant = state.tenant(org_id)
    plan = compile_flag(catalog, tenant, flag_key, at)
    default = plan.default.enabled
    if not plan.platforms and not plan.users and plan.until == math.inf:

        def plain(platform: str | None, user: str | None) -> bool:
            return default(org_id if user is None else user)

        return plain

    platforms = {p: rule.enabled for p, rule in plan.platforms.items()}
    users, until = plan.users, plan.until

    def check(platform: str | None, user: str | None) -> bool:
        if (user is not None and user in users) or time.time() >= until:
            return evaluate(catalog, tenant, flag_key, platform=platform, user_id=user).value
        enabled = default if platform is None else platforms.get(platform, default)
        return enabled(org_id if user is None else user)

    return check
