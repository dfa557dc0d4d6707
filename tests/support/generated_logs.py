"""Generated logs of changes for the plan laws: every level, rollouts, schedules, kill switch, archival, arms.

One strategy for the compiled plans of the core (`flagcore.plans`), the query service and the SDK, so the
three are checked on the same kinds of state.
"""

from __future__ import annotations

from datetime import timedelta

from hypothesis import strategies as st

from events import (
    FlagArchived,
    FlagDefined,
    FlagKind,
    KillSwitchEngaged,
    KillSwitchReleased,
    Level,
    OrgOverrideSet,
    PlatformOverrideSet,
    RolloutPercentageSet,
    SettingScheduled,
    SystemDefaultSet,
    UserOverrideCleared,
    UserOverrideSet,
    Variant,
)
from flagcore import FlagState, fold
from tests.support.factories import T0, LogBuilder

ORG = "acme"
OPS = "platform.meta.enabled"  # an ops flag: its kill switch applies
EXP = "exp.checkout.enabled"  # an experiment with three arms
REL = "ai.insights.enabled"
KEYS = [OPS, EXP, REL]
USERS = [None, "u-1", "u-2", *(f"bulk-{i}" for i in range(40))]
PLATFORMS = [None, "meta", "tiktok", "google"]

key = st.sampled_from(KEYS)
pct = st.integers(0, 100)
when = st.integers(30, 90).map(lambda s: T0 + timedelta(seconds=s))
level_scope = st.sampled_from(
    [
        {"level": Level.SYSTEM},
        {"level": Level.ORG, "org_id": ORG},
        {"level": Level.PLATFORM, "org_id": ORG, "platform": "meta"},
        {"level": Level.PLATFORM, "org_id": ORG, "platform": "tiktok"},
        {"level": Level.USER, "org_id": ORG, "user_id": "u-1"},
    ]
)
changes = st.one_of(
    st.builds(SystemDefaultSet, flag_key=key, enabled=st.booleans()),
    st.builds(OrgOverrideSet, flag_key=key, org_id=st.just(ORG), enabled=st.booleans()),
    st.builds(
        PlatformOverrideSet,
        flag_key=key,
        org_id=st.just(ORG),
        platform=st.sampled_from(["meta", "tiktok"]),
        enabled=st.booleans(),
    ),
    st.builds(UserOverrideSet, flag_key=key, org_id=st.just(ORG), user_id=st.just("u-1"), enabled=st.booleans()),
    st.builds(UserOverrideCleared, flag_key=key, org_id=st.just(ORG), user_id=st.just("u-1")),
    st.tuples(key, level_scope, pct | st.none()).map(
        lambda t: RolloutPercentageSet(flag_key=t[0], **t[1], percentage=t[2])
    ),
    st.tuples(key, level_scope, when, pct, st.booleans() | st.none()).map(
        lambda t: SettingScheduled(flag_key=t[0], **t[1], effective_at=t[2], rollout_percentage=t[3], enabled=t[4])
    ),
    st.builds(KillSwitchEngaged, flag_key=st.just(OPS)),
    st.builds(KillSwitchReleased, flag_key=st.just(OPS)),
    st.builds(FlagArchived, flag_key=key),
)


def state_of(log: list) -> FlagState:
    """The three flags defined (the experiment with arms control/new/on), then `log` folded."""
    builder = LogBuilder()
    arms = (Variant(name="control", weight=500), Variant(name="new", weight=300), Variant(name="on", weight=200))
    builder.extend(
        [
            FlagDefined(flag_key=OPS, group="platform", kind=FlagKind.OPS),
            FlagDefined(flag_key=EXP, group="exp", kind=FlagKind.EXPERIMENT, variants=arms),
            FlagDefined(flag_key=REL, group="ai"),
            *log,
        ]
    )
    return fold(builder.events)
