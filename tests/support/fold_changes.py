"""A Hypothesis strategy of flag changes over a few flags, orgs, platforms and users, for the laws of the fold.

Changes drawn here may be invalid or change nothing in sequence; `LogBuilder` seals only those that apply.
"""

from __future__ import annotations

from hypothesis import strategies as st

from events import (
    FlagArchived,
    FlagDefined,
    Level,
    OrgOverrideCleared,
    OrgOverrideSet,
    PlatformOverrideCleared,
    PlatformOverrideSet,
    RolloutPercentageSet,
    SystemDefaultSet,
    UserOverrideCleared,
    UserOverrideSet,
)

FLAGS = ["ai.insights.enabled", "platform.meta.enabled", "campaign.creation.enabled"]
ORGS = ["acme", "globex"]
PLATFORMS = ["meta", "tiktok"]
USERS = ["u1", "u2"]

_flag = st.sampled_from(FLAGS)
_org = st.sampled_from(ORGS)
_pct = st.one_of(st.none(), st.integers(0, 100))

changes = st.one_of(
    st.builds(FlagDefined, flag_key=_flag, group=st.just("g")),
    st.builds(FlagArchived, flag_key=_flag),
    st.builds(SystemDefaultSet, flag_key=_flag, enabled=st.booleans()),
    st.builds(OrgOverrideSet, flag_key=_flag, org_id=_org, enabled=st.booleans()),
    st.builds(OrgOverrideCleared, flag_key=_flag, org_id=_org),
    st.builds(PlatformOverrideSet, flag_key=_flag, org_id=_org, platform=st.sampled_from(PLATFORMS),
              enabled=st.booleans()),
    st.builds(PlatformOverrideCleared, flag_key=_flag, org_id=_org, platform=st.sampled_from(PLATFORMS)),
    st.builds(UserOverrideSet, flag_key=_flag, org_id=_org, user_id=st.sampled_from(USERS), enabled=st.booleans()),
    st.builds(UserOverrideCleared, flag_key=_flag, org_id=_org, user_id=st.sampled_from(USERS)),
    st.builds(RolloutPercentageSet, flag_key=_flag, level=st.just(Level.ORG), org_id=_org, percentage=_pct),
    st.builds(RolloutPercentageSet, flag_key=_flag, level=st.just(Level.SYSTEM), percentage=_pct),
)
