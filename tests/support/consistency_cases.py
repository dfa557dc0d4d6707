"""One table of evaluation cases every surface must answer alike: the pure core, the native API, OFREP (the SDK).

`changes(base)` is the world: the changes every surface starts from, as events
(sealed in order by `sealed(base)`, so each surface folds or projects the very
same log). Scheduled steps take effect at `base`. `CASES` is the table: who asks
about which flag, when (`at`, an offset from `base`; None where no schedule is
involved), and the expected value, variant, reason and deciding level. Buckets
behind the rollout rows (murmur3, Unleash's): c.rollout u-1 23, u-2 60, acme 99;
c.platform-rollout u-1 10, u-4 40 (the edge of 40%), u-2 86; c.ramp (50%, then
100% at `base`) u-1 22, u-4 64; arms of c.experiment: u-1 blue, u-3 control, acme green. Typed flags: c.ratio
(a float, 50%) u-1 18, u-2 76, u-3 53, acme 38; c.limit's split (an integer, small/large 500/500): u-1 large,
u-2 large, u-3 small, acme large.

A runner per surface turns a case into an `Outcome` and compares it with
`case.expected`; a surface that does not report a field leaves it None and the
comparison skips it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import JsonValue

from events import (
    AnyChange,
    Envelope,
    FlagArchived,
    FlagDefined,
    FlagKind,
    KillSwitchEngaged,
    Level,
    OrgOverrideCleared,
    OrgOverrideSet,
    Platform,
    PlatformOverrideSet,
    RolloutPercentageSet,
    SettingScheduled,
    SystemDefaultSet,
    TargetingRulesSet,
    UserOverrideSet,
    ValueType,
    Variant,
    VariantSelected,
)
from tests.support.factories import LogBuilder

ORG, OTHER = "acme", "globex"
JUST_BEFORE = -timedelta(microseconds=1)
AT = timedelta(0)


def changes(base: datetime) -> list[AnyChange]:
    """The world every surface evaluates in; scheduled steps fall due at `base`."""

    def define(key: str, kind: FlagKind = FlagKind.RELEASE, **more: object) -> FlagDefined:
        return FlagDefined(flag_key=key, group="consistency", kind=kind, description=key, **more)  # type: ignore[arg-type]

    def rollout(key: str, pct: int, level: Level = Level.ORG, **scope: object) -> RolloutPercentageSet:
        return RolloutPercentageSet(flag_key=key, level=level, org_id=ORG, percentage=pct, **scope)  # type: ignore[arg-type]

    arms = (Variant(name="control", weight=500), Variant(name="blue", weight=300), Variant(name="green", weight=200))
    return [
        define("c.levels"),
        SystemDefaultSet(flag_key="c.levels", enabled=False),
        OrgOverrideSet(flag_key="c.levels", org_id=ORG, enabled=True),
        PlatformOverrideSet(flag_key="c.levels", org_id=ORG, platform=Platform.TIKTOK, enabled=False),
        UserOverrideSet(flag_key="c.levels", org_id=ORG, user_id="u-1", enabled=True),
        define("c.rollout"),
        SystemDefaultSet(flag_key="c.rollout", enabled=False),
        rollout("c.rollout", 50),
        define("c.platform-rollout"),
        PlatformOverrideSet(flag_key="c.platform-rollout", org_id=ORG, platform=Platform.META, enabled=True),
        rollout("c.platform-rollout", 40, Level.PLATFORM, platform=Platform.META),
        define("c.archived"),
        SystemDefaultSet(flag_key="c.archived", enabled=True),
        FlagArchived(flag_key="c.archived"),
        define("c.unset"),
        define("c.cleared"),
        SystemDefaultSet(flag_key="c.cleared", enabled=True),
        OrgOverrideSet(flag_key="c.cleared", org_id=ORG, enabled=False),
        OrgOverrideCleared(flag_key="c.cleared", org_id=ORG),
        define("c.experiment", FlagKind.EXPERIMENT, variants=arms),
        OrgOverrideSet(flag_key="c.experiment", org_id=ORG, enabled=True),
        define("c.killed", FlagKind.OPS),
        SystemDefaultSet(flag_key="c.killed", enabled=True),
        KillSwitchEngaged(flag_key="c.killed"),
        define("c.scheduled"),
        SystemDefaultSet(flag_key="c.scheduled", enabled=False),
        SettingScheduled(flag_key="c.scheduled", level=Level.ORG, org_id=ORG, effective_at=base, enabled=True),
        define("c.ramp"),
        rollout("c.ramp", 50),
        SettingScheduled(flag_key="c.ramp", level=Level.ORG, org_id=ORG, effective_at=base, rollout_percentage=100),
        *typed_changes(),
        *rule_changes(),
    ]


def typed_changes() -> list[AnyChange]:
    """A flag of each type but boolean: a variant at three levels, a split, a rollout, an on/off override."""

    def define(key: str, kind: ValueType, values: dict[str, JsonValue], default: str, off: str) -> FlagDefined:
        return FlagDefined(flag_key=key, group="consistency", description=key, value_type=kind, values=values,
                           default_variant=default, off_variant=off)  # fmt: skip

    halves = (Variant(name="small", weight=500), Variant(name="large", weight=500))
    return [
        define("c.theme", ValueType.STRING, THEMES, "light", "dark"),
        SystemDefaultSet(flag_key="c.theme", enabled=True),
        VariantSelected(flag_key="c.theme", level=Level.SYSTEM, variant="blue"),
        VariantSelected(flag_key="c.theme", level=Level.PLATFORM, org_id=ORG, platform=Platform.META, variant="dark"),
        VariantSelected(flag_key="c.theme", level=Level.USER, org_id=ORG, user_id="u-1", variant="light"),
        define("c.limit", ValueType.INTEGER, {"small": 10, "large": 1000, "none": 0}, "small", "none"),
        OrgOverrideSet(flag_key="c.limit", org_id=ORG, enabled=True),
        VariantSelected(flag_key="c.limit", level=Level.ORG, org_id=ORG, split=halves),
        define("c.ratio", ValueType.FLOAT, {"low": 0.25, "high": 0.75}, "high", "low"),
        RolloutPercentageSet(flag_key="c.ratio", level=Level.ORG, org_id=ORG, percentage=50),
        define("c.layout", ValueType.OBJECT, {"grid": {"columns": 3}, "list": [1, 2]}, "grid", "list"),
        OrgOverrideSet(flag_key="c.layout", org_id=ORG, enabled=True),
        PlatformOverrideSet(flag_key="c.layout", org_id=ORG, platform=Platform.TIKTOK, enabled=False),
    ]


THEMES: dict[str, JsonValue] = {"light": "#fff", "dark": "#000", "blue": "#00f"}


def _rules(key: str, org: str | None, *rules: dict[str, Any]) -> TargetingRulesSet:
    level = "system" if org is None else "org"
    return TargetingRulesSet.model_validate({"flag_key": key, "level": level, "org_id": org, "rules": rules})


def _if(attribute: str, operator: str, *values: Any, case_sensitive: bool = True) -> dict[str, Any]:
    return {"attribute": attribute, "operator": operator, "values": values, "case_sensitive": case_sensitive}


def rule_changes() -> list[AnyChange]:
    """Targeting rules at the system level and for ORG, each operator family once, leading to variants and a split.

    c.rules (boolean, system default off): ORG's rules `many-seats` (seats >= 100 → off) then `enterprise`
    (plan in enterprise/scale, any case → on); the system's `staff` (email ends with @acme.com, any case →
    on), `new-app` (app_version >= 2.1.0 and country not FR → on), `office` (ip in 10.0.0.0/8 → on),
    `globex-mail` (email matches ^[a-z]+@globex[.]com$ → on), `late` (signed_up after 2030-01-01 → on),
    `tagged` (beta exists and org equals globex → on), `pilots` (targeting_key in u-7/u-8 → on).
    u-9 has a user override (off) in ORG, which outranks every rule. ORG switched c.rules-off off: the system's
    rules are not tried under the org's own setting, its own are.
    c.rules-theme (string, system default blue): ORG's `dach` (country in DE/AT → a light/dark split, 500/500:
    u-1 light, u-2 dark, u-3 light, acme dark), the system's `dark-mode` (theme_pref equals dark → dark).
    """
    halves = ({"name": "light", "weight": 500}, {"name": "dark", "weight": 500})
    return [
        FlagDefined(flag_key="c.rules", group="consistency", description="c.rules"),
        SystemDefaultSet(flag_key="c.rules", enabled=False),
        _rules("c.rules", None,
               {"id": "staff", "conditions": [_if("email", "ends_with", "@ACME.com", case_sensitive=False)],
                "variant": "on"},
               {"id": "new-app", "conditions": [_if("app_version", "semver_gte", "2.1.0"),
                                                _if("country", "not_equals", "FR")], "variant": "on"},
               {"id": "office", "conditions": [_if("ip", "in_cidr", "10.0.0.0/8", "192.168.0.0/16")], "variant": "on"},
               {"id": "globex-mail", "conditions": [_if("email", "matches", r"^[a-z]+@globex[.]com$")],
                "variant": "on"},
               {"id": "late", "conditions": [_if("signed_up", "after", "2030-01-01T00:00:00+00:00")], "variant": "on"},
               {"id": "tagged", "conditions": [_if("beta", "exists"), _if("org", "equals", OTHER)], "variant": "on"},
               {"id": "pilots", "conditions": [_if("targeting_key", "in", "u-7", "u-8")], "variant": "on"}),
        _rules("c.rules", ORG,
               {"id": "many-seats", "conditions": [_if("seats", "gte", 100)], "variant": "off"},
               {"id": "enterprise", "conditions": [_if("plan", "in", "enterprise", "scale", case_sensitive=False)],
                "variant": "on"}),
        UserOverrideSet(flag_key="c.rules", org_id=ORG, user_id="u-9", enabled=False),
        FlagDefined(flag_key="c.rules-off", group="consistency", description="c.rules-off"),
        SystemDefaultSet(flag_key="c.rules-off", enabled=False),
        _rules("c.rules-off", None, {"id": "everyone", "conditions": [_if("org", "exists")], "variant": "on"}),
        OrgOverrideSet(flag_key="c.rules-off", org_id=ORG, enabled=False),
        _rules("c.rules-off", ORG, {"id": "vip", "conditions": [_if("plan", "equals", "vip")], "variant": "on"}),
        FlagDefined(flag_key="c.rules-theme", group="consistency", description="c.rules-theme",
                    value_type=ValueType.STRING, values=THEMES, default_variant="light", off_variant="dark"),
        SystemDefaultSet(flag_key="c.rules-theme", enabled=True),
        VariantSelected(flag_key="c.rules-theme", level=Level.SYSTEM, variant="blue"),
        _rules("c.rules-theme", ORG, {"id": "dach", "conditions": [_if("country", "in", "DE", "AT")], "split": halves}),
        _rules("c.rules-theme", None,
               {"id": "dark-mode", "conditions": [_if("theme_pref", "equals", "dark")], "variant": "dark"}),
    ]  # fmt: skip


def sealed(base: datetime) -> list[Envelope]:
    """`changes(base)` as the command store would seal them, a second apart from a fixed start."""
    builder = LogBuilder(datetime(2026, 1, 1, tzinfo=UTC))
    events = builder.extend(changes(base))
    assert len(events) == len(changes(base)), "a change of the world changes nothing"
    return events


@dataclass(frozen=True)
class Outcome:
    value: Any  # of the flag's type
    variant: str | None
    reason: str
    level: str | None
    rule: str | None = None  # the targeting rule that matched

    def __eq__(self, other: object) -> bool:
        """Field by field, the value's type included (`0 == False` and `1.0 == 1` in Python, not in JSON)."""
        if not isinstance(other, Outcome):
            return NotImplemented
        return (type(self.value), self.value, self.variant, self.reason, self.level, self.rule) == (
            type(other.value),
            other.value,
            other.variant,
            other.reason,
            other.level,
            other.rule,
        )

    def matches(self, expected: Outcome) -> bool:
        """Equal on every field this surface reports (None: not reported)."""
        mine = expected if self.variant is not None else replace(expected, variant=None)
        return self == mine


@dataclass(frozen=True)
class Case:
    flag: str
    org: str
    platform: str | None
    user: str | None
    expected: Outcome
    at: timedelta | None = None  # when to ask, from `base`; None: any time (no schedule involved)
    context: dict[str, Any] | None = None  # the evaluation context's attributes (targeting rules read them)

    @property
    def name(self) -> str:
        when = "" if self.at is None else f" @base{self.at.total_seconds():+g}s"
        attrs = "" if self.context is None else " " + ",".join(f"{k}={v!r}" for k, v in self.context.items())
        return f"{self.flag} {self.org}/{self.platform or '-'}/{self.user or '-'}{when}{attrs}"


def _o(value: Any, variant: str | None, reason: str, level: str | None, rule: str | None = None) -> Outcome:
    return Outcome(value, variant, reason, level, rule)


CASES: tuple[Case, ...] = (
    # the four levels, highest first
    Case("c.levels", ORG, "tiktok", "u-1", _o(True, "on", "TARGETING_MATCH", "user")),
    Case("c.levels", ORG, "tiktok", "u-2", _o(False, "off", "TARGETING_MATCH", "platform")),
    Case("c.levels", ORG, "meta", "u-2", _o(True, "on", "TARGETING_MATCH", "org")),
    Case("c.levels", ORG, None, None, _o(True, "on", "TARGETING_MATCH", "org")),
    Case("c.levels", OTHER, "tiktok", "u-1", _o(False, "off", "STATIC", "system")),
    # sticky rollouts: the user's bucket, or the org's without a user
    Case("c.rollout", ORG, None, "u-1", _o(True, "on", "SPLIT", "org")),
    Case("c.rollout", ORG, None, "u-2", _o(False, "off", "SPLIT", "org")),
    Case("c.rollout", ORG, None, None, _o(False, "off", "SPLIT", "org")),
    Case("c.rollout", OTHER, None, "u-1", _o(False, "off", "STATIC", "system")),
    Case("c.platform-rollout", ORG, "meta", "u-1", _o(True, "on", "SPLIT", "platform")),
    Case("c.platform-rollout", ORG, "meta", "u-4", _o(True, "on", "SPLIT", "platform")),
    Case("c.platform-rollout", ORG, "meta", "u-2", _o(False, "off", "SPLIT", "platform")),
    Case("c.platform-rollout", ORG, "google", "u-1", _o(False, "off", "DEFAULT", None)),
    # archived, never set, set then cleared
    Case("c.archived", ORG, None, "u-1", _o(False, "off", "DISABLED", "system")),
    Case("c.unset", ORG, None, "u-1", _o(False, "off", "DEFAULT", None)),
    Case("c.cleared", ORG, None, None, _o(True, "on", "STATIC", "system")),
    # an experiment's sticky arms (Unleash's variant hashing)
    Case("c.experiment", ORG, None, "u-1", _o(True, "blue", "TARGETING_MATCH", "org")),
    Case("c.experiment", ORG, None, "u-3", _o(True, "control", "TARGETING_MATCH", "org")),
    Case("c.experiment", ORG, None, None, _o(True, "green", "TARGETING_MATCH", "org")),
    Case("c.experiment", OTHER, None, "u-1", _o(False, "off", "DEFAULT", None)),
    # an ops flag's kill switch wins over every level
    Case("c.killed", ORG, None, "u-1", _o(False, "off", "DISABLED", "system")),
    # schedules on each side of their instant
    Case("c.scheduled", ORG, None, "u-1", _o(False, "off", "STATIC", "system"), JUST_BEFORE),
    Case("c.scheduled", ORG, None, "u-1", _o(True, "on", "TARGETING_MATCH", "org"), AT),
    Case("c.ramp", ORG, None, "u-4", _o(False, "off", "SPLIT", "org"), JUST_BEFORE),
    Case("c.ramp", ORG, None, "u-4", _o(True, "on", "SPLIT", "org"), AT),
    Case("c.ramp", ORG, None, "u-1", _o(True, "on", "SPLIT", "org"), JUST_BEFORE),
    # a flag nobody defined
    Case("c.nothing", ORG, None, "u-1", _o(False, None, "ERROR", None)),
    # typed flags: a variant chosen at each level, a split, a rollout, an override switching one off
    Case("c.theme", ORG, "meta", "u-1", _o("#fff", "light", "TARGETING_MATCH", "user")),
    Case("c.theme", ORG, "meta", "u-2", _o("#000", "dark", "TARGETING_MATCH", "platform")),
    Case("c.theme", ORG, None, "u-2", _o("#00f", "blue", "STATIC", "system")),
    Case("c.theme", OTHER, None, None, _o("#00f", "blue", "STATIC", "system")),
    Case("c.limit", ORG, None, "u-1", _o(1000, "large", "SPLIT", "org")),
    Case("c.limit", ORG, None, "u-3", _o(10, "small", "SPLIT", "org")),
    Case("c.limit", ORG, None, None, _o(1000, "large", "SPLIT", "org")),
    Case("c.limit", OTHER, None, "u-1", _o(0, "none", "DEFAULT", None)),
    Case("c.ratio", ORG, None, "u-1", _o(0.75, "high", "SPLIT", "org")),
    Case("c.ratio", ORG, None, "u-2", _o(0.25, "low", "SPLIT", "org")),
    Case("c.ratio", ORG, None, None, _o(0.75, "high", "SPLIT", "org")),
    Case("c.layout", ORG, None, "u-1", _o({"columns": 3}, "grid", "TARGETING_MATCH", "org")),
    Case("c.layout", ORG, "tiktok", "u-1", _o([1, 2], "list", "TARGETING_MATCH", "platform")),
    Case("c.layout", OTHER, None, "u-1", _o([1, 2], "list", "DEFAULT", None)),
)


def _r(flag: str, org: str, user: str | None, context: dict[str, Any] | None, expected: Outcome) -> Case:
    return Case(flag, org, None, user, expected, context=context)


RULE_CASES: tuple[Case, ...] = (
    # the system's rules, each operator family; no rule holds: the system default
    _r("c.rules", OTHER, "u-1", {"email": "Ana@Acme.COM"}, _o(True, "on", "TARGETING_MATCH", "system", "staff")),
    _r("c.rules", OTHER, "u-1", {"app_version": "2.10.0", "country": "DE"},
       _o(True, "on", "TARGETING_MATCH", "system", "new-app")),
    _r("c.rules", OTHER, "u-1", {"app_version": "2.10.0", "country": "FR"}, _o(False, "off", "STATIC", "system")),
    _r("c.rules", OTHER, "u-1", {"app_version": "2.1.0-rc.1"}, _o(False, "off", "STATIC", "system")),
    _r("c.rules", OTHER, None, {"ip": "10.20.30.40"}, _o(True, "on", "TARGETING_MATCH", "system", "office")),
    _r("c.rules", OTHER, None, {"ip": "172.16.0.1"}, _o(False, "off", "STATIC", "system")),
    _r("c.rules", OTHER, "u-1", {"email": "bob@globex.com"},
       _o(True, "on", "TARGETING_MATCH", "system", "globex-mail")),
    _r("c.rules", OTHER, "u-1", {"email": "Bob@globex.com"}, _o(False, "off", "STATIC", "system")),
    _r("c.rules", OTHER, "u-1", {"signed_up": "2030-06-01T00:00:00Z"},
       _o(True, "on", "TARGETING_MATCH", "system", "late")),
    _r("c.rules", OTHER, "u-1", {"beta": True}, _o(True, "on", "TARGETING_MATCH", "system", "tagged")),
    _r("c.rules", ORG, "u-1", {"beta": True}, _o(False, "off", "STATIC", "system")),
    _r("c.rules", OTHER, "u-7", None, _o(True, "on", "TARGETING_MATCH", "system", "pilots")),
    _r("c.rules", OTHER, "u-1", None, _o(False, "off", "STATIC", "system")),
    _r("c.rules", OTHER, "u-1", {"email": None, "seats": 1.5}, _o(False, "off", "STATIC", "system")),
    # the org's rules, in order, before the system's; the first that holds decides
    _r("c.rules", ORG, "u-1", {"plan": "Enterprise", "seats": 500},
       _o(False, "off", "TARGETING_MATCH", "org", "many-seats")),
    _r("c.rules", ORG, "u-1", {"plan": "Enterprise", "seats": 5},
       _o(True, "on", "TARGETING_MATCH", "org", "enterprise")),
    _r("c.rules", ORG, "u-1", {"seats": 500, "email": "ana@acme.com"},
       _o(False, "off", "TARGETING_MATCH", "org", "many-seats")),
    _r("c.rules", OTHER, "u-1", {"seats": 500, "email": "ana@acme.com"},
       _o(True, "on", "TARGETING_MATCH", "system", "staff")),
    _r("c.rules", ORG, "u-1", {"email": "ana@acme.com"}, _o(True, "on", "TARGETING_MATCH", "system", "staff")),
    # a user's override outranks every rule
    _r("c.rules", ORG, "u-9", {"plan": "enterprise"}, _o(False, "off", "TARGETING_MATCH", "user")),
    # an org's own setting outranks the system's rules, not its own
    _r("c.rules-off", ORG, "u-1", None, _o(False, "off", "TARGETING_MATCH", "org")),
    _r("c.rules-off", ORG, "u-1", {"plan": "vip"}, _o(True, "on", "TARGETING_MATCH", "org", "vip")),
    _r("c.rules-off", OTHER, "u-1", None, _o(True, "on", "TARGETING_MATCH", "system", "everyone")),
    # a rule leading to a split (sticky per user, the org without one), and one to a variant
    _r("c.rules-theme", ORG, "u-1", {"country": "DE"}, _o("#fff", "light", "TARGETING_MATCH", "org", "dach")),
    _r("c.rules-theme", ORG, "u-2", {"country": "AT"}, _o("#000", "dark", "TARGETING_MATCH", "org", "dach")),
    _r("c.rules-theme", ORG, "u-3", {"country": "DE"}, _o("#fff", "light", "TARGETING_MATCH", "org", "dach")),
    _r("c.rules-theme", ORG, None, {"country": "DE"}, _o("#000", "dark", "TARGETING_MATCH", "org", "dach")),
    _r("c.rules-theme", OTHER, "u-1", {"country": "DE"}, _o("#00f", "blue", "STATIC", "system")),
    _r("c.rules-theme", OTHER, "u-1", {"theme_pref": "dark"},
       _o("#000", "dark", "TARGETING_MATCH", "system", "dark-mode")),
    _r("c.rules-theme", ORG, "u-2", {"theme_pref": "dark", "country": "CH"},
       _o("#000", "dark", "TARGETING_MATCH", "system", "dark-mode")),
)  # fmt: skip
