"""Generated targeting rules and evaluation contexts: every operator, on attributes the contexts also draw,
so that rules both hold and fail (and split), at the system level and for the org of `generated_logs`.

Rules also name segments (`in_segment` / `not_in_segment`), of keys that `segment_changes` defines, changes and
archives at both levels, and of one (`nowhere`) no change ever defines."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from events import Level, SegmentArchived, SegmentChange, SegmentChanged, SegmentDefined, TargetingRulesSet, Variant
from tests.support.generated_logs import KEYS, NAMES, ORG

# attribute → (operator → the values a condition may compare with), and what a context may hold for it
_TEXT = ["a@acme.com", "@acme.com", "acme", "B@Acme.com"]
_CONDITIONS: dict[str, dict[str, list[Any]]] = {
    "email": {
        "equals": _TEXT, "not_equals": _TEXT, "in": _TEXT, "not_in": _TEXT, "starts_with": _TEXT,
        "ends_with": _TEXT, "contains": _TEXT, "matches": [r"^[a-z]+@acme\.com$", "ACME", "@"],
    },
    "plan": {"equals": ["pro", "Pro"], "in": ["free", "pro", "enterprise"], "not_in": ["free", "Pro"]},
    "app_version": {
        op: ["1.0.0", "2.1.0", "2.10.0-rc.1"]
        for op in ("semver_eq", "semver_lt", "semver_lte", "semver_gt", "semver_gte")
    },
    "ip": {"in_cidr": ["10.0.0.0/8", "2001:db8::/32", "192.168.1.0/24"]},
    "signup": {"before": ["2026-01-01T00:00:00+00:00"], "after": ["2025-06-01T00:00:00+02:00"]},
    "age": {"lt": [18, 21.5], "lte": [18], "gt": [18], "gte": [21.5], "equals": [18, 18.0]},
    "org": {"equals": [ORG, "other"], "not_equals": [ORG]},
    "platform": {"equals": ["meta"], "in": ["meta", "tiktok"], "not_in": ["tiktok"]},
    "targeting_key": {"in": ["u-1", "u-2"], "starts_with": ["bulk-1"]},
}  # fmt: skip
_CONTEXT: dict[str, list[Any]] = {
    "email": ["a@acme.com", "B@Acme.com", "x@other.io", "bob@acme.com", 3, None],
    "plan": ["free", "pro", "Pro", "enterprise"],
    "app_version": ["1.0.0", "2.1.0", "2.10.0", "2.10.0-rc.1", "2.1", 7],
    "ip": ["10.1.2.3", "192.168.1.7", "2001:db8::1", "nope"],
    "signup": ["2025-12-31T00:00:00Z", "2026-06-01T00:00:00", 1767225601, "x"],
    "age": [17, 18, 30.0, "19", True],
    "org": ["other"],  # the call's own org wins: a context cannot claim another
}
_LISTS = {"in", "not_in", "in_cidr"}
SEGMENT_KEYS = ["beta", "staff"]  # defined, changed and archived by `segment_changes`
UNKNOWN_SEGMENT = "nowhere"  # never defined: a rule naming it never matches


@st.composite
def conditions(draw: st.DrawFn) -> dict[str, Any]:
    attribute = draw(st.sampled_from(sorted(_CONDITIONS)))  # org, platform, targeting_key: the call's own
    if draw(st.integers(0, 9)) == 0:
        return {"attribute": attribute, "operator": draw(st.sampled_from(["exists", "not_exists"]))}
    operators = _CONDITIONS[attribute]
    operator = draw(st.sampled_from(sorted(operators)))
    pool = operators[operator]
    if operator in _LISTS:
        values = draw(st.lists(st.sampled_from(pool), min_size=1, max_size=3, unique=True))
    else:
        values = [draw(st.sampled_from(pool))]
    return {"attribute": attribute, "operator": operator, "values": values, "case_sensitive": draw(st.booleans())}


@st.composite
def segment_conditions(draw: st.DrawFn) -> dict[str, Any]:
    """`in_segment` / `not_in_segment` naming 1–2 segments (now and then the unknown one)."""
    keys = draw(st.lists(st.sampled_from([*SEGMENT_KEYS, *SEGMENT_KEYS, UNKNOWN_SEGMENT]), min_size=1, max_size=2,
                         unique=True))  # fmt: skip
    return {"operator": draw(st.sampled_from(["in_segment", "not_in_segment"])), "values": keys}


@st.composite
def rule_conditions(draw: st.DrawFn) -> dict[str, Any]:
    """A rule's condition: one in four names segments (where none is defined it never holds, so rarer)."""
    return draw(segment_conditions() if draw(st.integers(0, 3)) == 0 else conditions())


@st.composite
def segment_changes(draw: st.DrawFn) -> SegmentChange:
    """A segment of `SEGMENT_KEYS` defined, changed or archived, system-wide or the org's (one that does not
    apply, e.g. a change of a segment not defined, is left out of the log by `LogBuilder`)."""
    key = draw(st.sampled_from(SEGMENT_KEYS))
    org = draw(st.sampled_from([None, ORG]))
    kind = draw(st.sampled_from(["define", "define", "define", "change", "archive"]))
    if kind == "archive":
        return SegmentArchived(segment_key=key, org_id=org)
    members = {"attribute": "targeting_key", "operator": "in", "values": draw(
        st.lists(st.sampled_from(["u-1", "u-2", "bulk-1", "bulk-2", "bulk-3", "bulk-30"]), min_size=1, max_size=4,
                 unique=True))}  # fmt: skip
    found = draw(st.lists(st.one_of(conditions(), st.just(members)), min_size=1, max_size=2))
    cls = SegmentDefined if kind == "define" else SegmentChanged
    return cls.model_validate({"segment_key": key, "org_id": org, "name": key.title(), "conditions": found})


@st.composite
def rule_sets(draw: st.DrawFn) -> TargetingRulesSet:
    """One level's list of 1–4 rules (now and then none: clearing it) on one flag, each serving a variant (one
    the flag may not have) or a split."""
    flag = draw(st.sampled_from(KEYS))
    names = NAMES[flag]
    rules = []
    for i in range(0 if draw(st.integers(0, 9)) == 0 else draw(st.integers(1, 4))):
        rule: dict[str, Any] = {"id": f"r{i}", "conditions": draw(st.lists(rule_conditions(), min_size=1, max_size=3))}
        if draw(st.booleans()):
            rule["variant"] = draw(st.sampled_from(names))
        else:
            arms = draw(st.lists(st.sampled_from(names), min_size=1, max_size=3, unique=True))
            cuts = sorted(draw(st.lists(st.integers(0, 1000), min_size=len(arms) - 1, max_size=len(arms) - 1)))
            weights = [b - a for a, b in zip([0, *cuts], [*cuts, 1000], strict=True)]
            rule["split"] = [Variant(name=n, weight=w) for n, w in zip(arms, weights, strict=True)]
        rules.append(rule)
    scope = draw(st.sampled_from([{"level": Level.SYSTEM}, {"level": Level.ORG, "org_id": ORG}]))
    return TargetingRulesSet.model_validate({"flag_key": flag, **scope, "rules": rules})


contexts = st.fixed_dictionaries({}, optional={k: st.sampled_from(v) for k, v in _CONTEXT.items()})
"""An evaluation context: any of the attributes the rules read, each with a value that may or may not match."""
