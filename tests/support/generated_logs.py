"""Generated logs of changes for the plan laws: every level, rollouts, schedules, kill switch, archival, arms,
typed flags (string, integer, float, object) and a level's variant or weighted split.

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
    ValueType,
    Variant,
    VariantSelected,
)
from flagcore import FlagState, fold
from tests.support.factories import T0, LogBuilder

ORG = "acme"
OPS = "platform.meta.enabled"  # an ops flag: its kill switch applies
EXP = "exp.checkout.enabled"  # an experiment with three arms
REL = "ai.insights.enabled"
THEME = "checkout.theme"  # a string flag: blue (default), red (off), green
LIMIT = "upload.limit"  # an integer flag
RATIO = "sampling.ratio"  # a float flag
LAYOUT = "home.layout"  # an object flag
BOOLEAN_KEYS = [OPS, EXP, REL]
TYPED: dict[str, tuple[ValueType, dict[str, object], str, str]] = {
    THEME: (ValueType.STRING, {"blue": "#00f", "red": "#f00", "green": "#0f0"}, "blue", "red"),
    LIMIT: (ValueType.INTEGER, {"small": 10, "large": 1000, "none": 0}, "small", "none"),
    RATIO: (ValueType.FLOAT, {"low": 0.1, "high": 0.9}, "high", "low"),
    LAYOUT: (ValueType.OBJECT, {"grid": {"columns": 3, "dense": True}, "list": [1, 2], "plain": {}}, "grid", "plain"),
}
KEYS = [*BOOLEAN_KEYS, *TYPED]
NAMES = {OPS: ["on", "off"], EXP: ["control", "new", "on", "off", "gone"], REL: ["on", "off"]} | {
    k: [*values, "gone"]
    for k, (_, values, _, _) in TYPED.items()  # "gone": a name the flag does not have
}
USERS = [None, "u-1", "u-2", *(f"bulk-{i}" for i in range(40))]
PLATFORMS = [None, "meta", "tiktok", "google"]

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


@st.composite
def selections(draw: st.DrawFn, keys: list[str]) -> VariantSelected:
    """A level's variant, weighted split (weights summing to 1000) or return to the default."""
    flag = draw(st.sampled_from(keys))
    scope = draw(level_scope)
    names = NAMES[flag]
    choice = draw(st.sampled_from(["variant", "split", "default"]))
    if choice == "variant":
        return VariantSelected(flag_key=flag, **scope, variant=draw(st.sampled_from(names)))
    if choice == "default":
        return VariantSelected(flag_key=flag, **scope)
    arms = draw(st.lists(st.sampled_from(names), min_size=1, max_size=4, unique=True))
    cuts = sorted(draw(st.lists(st.integers(0, 1000), min_size=len(arms) - 1, max_size=len(arms) - 1)))
    weights = [b - a for a, b in zip([0, *cuts], [*cuts, 1000], strict=True)]
    split = tuple(Variant(name=n, weight=w) for n, w in zip(arms, weights, strict=True))
    return VariantSelected(flag_key=flag, **scope, split=split)


def setting_changes(key: st.SearchStrategy[str]) -> st.SearchStrategy[object]:
    """On/off at every level, rollouts, schedules, the kill switch and archival, on the flags `key` draws."""
    return st.one_of(
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


boolean_changes = setting_changes(st.sampled_from(BOOLEAN_KEYS))
"""What a log written before typed flags could hold: the boolean flags only, no level choosing a variant."""

changes = st.one_of(
    setting_changes(st.sampled_from(KEYS)),
    selections(KEYS),
)
"""Every kind of change, on every flag (boolean and typed)."""


def definitions() -> list[FlagDefined]:
    """The three boolean flags (the experiment with arms control/new/on) and the four typed ones."""
    arms = (Variant(name="control", weight=500), Variant(name="new", weight=300), Variant(name="on", weight=200))
    typed = [
        FlagDefined(flag_key=k, group=k.split(".", 1)[0], value_type=t, values=v, default_variant=d, off_variant=o)
        for k, (t, v, d, o) in TYPED.items()
    ]
    return [
        FlagDefined(flag_key=OPS, group="platform", kind=FlagKind.OPS),
        FlagDefined(flag_key=EXP, group="exp", kind=FlagKind.EXPERIMENT, variants=arms),
        FlagDefined(flag_key=REL, group="ai"),
        *typed,
    ]


def state_of(log: list) -> FlagState:
    """Every flag of `definitions` defined, then `log` folded."""
    builder = LogBuilder()
    builder.extend([*definitions(), *log])
    return fold(builder.events)
