"""Shorthands over `tests.support.factories.LogBuilder` for the projector and query tests.

`EventLog` names changes by level (`org`, `platform`, `user`, `rollout`, ...) and maps
the sealed, hash-chained events to Kafka records, so a test can say what happened
in one line per event and produce exactly what the relay would publish. `random_log`,
`mixed_log` and `override_churn` are reproducible random logs for the projector's tests; `every_row_log`
writes one of every kind of read-model row (the contracts of the projector store and the document source).
"""

from __future__ import annotations

import random
from datetime import UTC, datetime

from events import (
    Actor,
    AnyChange,
    Envelope,
    FlagArchived,
    FlagDefined,
    FlagKind,
    FlagUpdated,
    KillSwitchEngaged,
    KillSwitchReleased,
    Level,
    OrgOverrideCleared,
    OrgOverrideSet,
    Platform,
    PlatformOverrideCleared,
    PlatformOverrideSet,
    Record,
    RolloutPercentageSet,
    SettingScheduled,
    SystemDefaultSet,
    TargetingRulesSet,
    UserOverrideCleared,
    UserOverrideSet,
    ValueType,
    Variant,
    VariantSelected,
    to_record,
)
from tests.support.factories import LogBuilder


class EventLog:
    """Sealed events in log order; `records()` maps them to Kafka records."""

    def __init__(self, *, start_sequence: int = 1) -> None:
        self._builder = LogBuilder()
        self._builder.sequence = start_sequence - 1

    @property
    def events(self) -> list[Envelope]:
        return self._builder.events

    def try_add(self, change: AnyChange, *, actor: str = "alice", reason: str = "test change") -> Envelope | None:
        """Seal `change`; None when it is invalid or changes nothing (as the command side would refuse)."""
        return self._builder.append(change, reason=reason, actor=Actor(id=f"key-{actor}", name=actor))

    def add(self, change: AnyChange, *, actor: str = "alice", reason: str = "test change") -> Envelope:
        envelope = self.try_add(change, actor=actor, reason=reason)
        if envelope is None:
            raise ValueError(f"{change!r} changes nothing or cannot apply")
        return envelope

    # shorthands
    def define(self, key: str, group: str = "test", kind: FlagKind = FlagKind.RELEASE) -> Envelope:
        return self.add(FlagDefined(flag_key=key, group=group, kind=kind, description=f"{key} flag"))

    def system(self, key: str, enabled: bool) -> Envelope:
        return self.add(SystemDefaultSet(flag_key=key, enabled=enabled))

    def org(self, org: str, key: str, enabled: bool | None) -> Envelope:
        return self.add(org_change(org, key, enabled))

    def platform(self, org: str, platform: str, key: str, enabled: bool | None) -> Envelope:
        return self.add(platform_change(org, platform, key, enabled))

    def user(self, org: str, user: str, key: str, enabled: bool | None) -> Envelope:
        return self.add(user_change(org, user, key, enabled))

    def rollout(
        self,
        key: str,
        percentage: int | None,
        *,
        level: Level,
        org: str | None = None,
        platform: str | None = None,
        user: str | None = None,
    ) -> Envelope:
        return self.add(
            RolloutPercentageSet(
                flag_key=key,
                level=level,
                org_id=org,
                platform=Platform(platform) if platform else None,
                user_id=user,
                percentage=percentage,
            )
        )

    def records(self) -> list[Record]:
        return [to_record(e) for e in self.events]


def org_change(org: str, key: str, enabled: bool | None) -> AnyChange:
    if enabled is None:
        return OrgOverrideCleared(flag_key=key, org_id=org)
    return OrgOverrideSet(flag_key=key, org_id=org, enabled=enabled)


def platform_change(org: str, platform: str, key: str, enabled: bool | None) -> AnyChange:
    p = Platform(platform)
    if enabled is None:
        return PlatformOverrideCleared(flag_key=key, org_id=org, platform=p)
    return PlatformOverrideSet(flag_key=key, org_id=org, platform=p, enabled=enabled)


def user_change(org: str, user: str, key: str, enabled: bool | None) -> AnyChange:
    if enabled is None:
        return UserOverrideCleared(flag_key=key, org_id=org, user_id=user)
    return UserOverrideSet(flag_key=key, org_id=org, user_id=user, enabled=enabled)


def random_log(
    n: int, *, orgs: list[str], flags: int = 8, users: int = 5, seed: int = 7, start_sequence: int = 1
) -> EventLog:
    """`n` events: definitions first, then a random mix of settings at every level (incl. clears)."""
    rng = random.Random(seed)
    log = EventLog(start_sequence=start_sequence)
    keys = [f"test.flag-{i}.enabled" for i in range(flags)]
    for key in keys:
        log.define(key)
    platforms = [p.value for p in Platform]
    while len(log.events) < n:
        key = rng.choice(keys)
        org = rng.choice(orgs)
        roll = rng.random()
        value = rng.choice([True, False, True, None])
        change: AnyChange
        if roll < 0.05:
            change = SystemDefaultSet(flag_key=key, enabled=bool(value))
        elif roll < 0.35:
            change = org_change(org, key, value)
        elif roll < 0.55:
            change = platform_change(org, rng.choice(platforms), key, value)
        elif roll < 0.85:
            change = user_change(org, f"user-{rng.randrange(users)}", key, value)
        else:
            level = rng.choice([Level.ORG, Level.PLATFORM, Level.USER, Level.SYSTEM])
            change = RolloutPercentageSet(
                flag_key=key,
                level=level,
                org_id=None if level is Level.SYSTEM else org,
                platform=Platform(rng.choice(platforms)) if level is Level.PLATFORM else None,
                user_id=f"user-{rng.randrange(users)}" if level is Level.USER else None,
                percentage=rng.choice([0, 10, 50, 100, None]),
            )
        log.try_add(change)  # a change that would change nothing is skipped, as the command side does
    return log


def mixed_log(seed: int) -> EventLog:
    """`random_log` over three orgs, then an ops flag whose kill switch is engaged and released, an archive, and
    typed flags with a variant or split chosen at every level and targeting rules (`every_row_log`'s)."""
    log = random_log(150, orgs=["o1", "o2", "o3"], flags=4, users=3, seed=seed)
    key = "test.ops-kill"
    log.define(key, kind=FlagKind.OPS)
    log.add(KillSwitchEngaged(flag_key=key))
    log.org("o1", key, True)
    log.add(KillSwitchReleased(flag_key=key))
    log.add(FlagArchived(flag_key="test.flag-3.enabled"))
    _typed_rows(log, "o1", "o2")
    _rule_rows(log, "o1", "o2", "c.limits")
    return log


def override_churn(seed: int, events: int) -> tuple[EventLog, list[str], list[str]]:
    """Sets and clears of org, platform and user overrides and rollouts, over a few orgs and flags."""
    rng = random.Random(seed)
    orgs = [f"c{seed}-org{i}" for i in range(3)]
    flags = [f"c{seed}.flag{i}" for i in range(3)]
    log = EventLog()
    for flag in flags:
        log.define(flag)
    while len(log.events) < len(flags) + events:
        org, flag, value = rng.choice(orgs), rng.choice(flags), rng.choice([True, False, None])
        platform, user = rng.choice(("meta", "tiktok")), rng.choice(("u1", "u2"))
        level = rng.choice([Level.ORG, Level.PLATFORM, Level.USER])
        changes = [
            org_change(org, flag, value),
            platform_change(org, platform, flag, value),
            user_change(org, user, flag, value),
            RolloutPercentageSet(
                flag_key=flag, level=level, org_id=org, percentage=rng.choice([None, 0, 30, 100]),
                platform=Platform(platform) if level is Level.PLATFORM else None,
                user_id=user if level is Level.USER else None,
            ),
        ]
        log.try_add(rng.choice(changes))  # None when it changes nothing, as the command side refuses it
    return log, orgs, flags


LATER = datetime(2030, 1, 1, tzinfo=UTC)  # after every event of these logs: a step scheduled then stays pending


def every_row_log(org: str = "o1", other: str = "o2") -> EventLog:
    """Definitions of every kind (variants and an expiry, a kill switch engaged, an archive, typed values), system
    defaults and rollouts, overrides at every level with a pending schedule, a variant or a split chosen at every
    level, a clear at each level (its row deleted), and targeting rules (system and per org, one list emptied)."""
    log = EventLog()
    log.define("c.release", group="c")
    log.add(
        FlagDefined(
            flag_key="c.experiment", group="c", kind=FlagKind.EXPERIMENT, description="arms", owner="growth",
            variants=(Variant(name="control", weight=500), Variant(name="blue", weight=500)), expires_at=LATER,
        )
    )  # fmt: skip
    log.define("c.ops", group="ops", kind=FlagKind.OPS)
    log.add(KillSwitchEngaged(flag_key="c.ops"))
    log.define("c.retired")
    log.add(FlagArchived(flag_key="c.retired"))
    log.system("c.release", True)
    log.rollout("c.experiment", 40, level=Level.SYSTEM)
    log.rollout("c.ops", 10, level=Level.SYSTEM)
    log.rollout("c.ops", None, level=Level.SYSTEM)
    log.org(org, "c.release", False)
    log.rollout("c.release", 25, level=Level.ORG, org=org)
    log.add(SettingScheduled(flag_key="c.release", level=Level.ORG, org_id=org, effective_at=LATER, enabled=True))
    log.platform(org, "meta", "c.release", True)
    log.platform(org, "tiktok", "c.release", True)
    log.platform(org, "tiktok", "c.release", None)
    log.user(org, "u1", "c.release", True)
    log.user(org, "u2", "c.experiment", False)
    log.user(org, "u2", "c.experiment", None)
    log.org(other, "c.experiment", True)
    log.user(other, "u1", "c.release", False)
    _typed_rows(log, org, other)
    _rule_rows(log, org, other)
    return log


def rules_change(flag_key: str, org: str | None, *rules: dict[str, object]) -> TargetingRulesSet:
    """A flag's targeting rules at the system level (`org` None) or for one org, from plain dicts."""
    level = "system" if org is None else "org"
    return TargetingRulesSet.model_validate({"flag_key": flag_key, "level": level, "org_id": org, "rules": rules})


def _rule_rows(log: EventLog, org: str, other: str, flag: str = "c.release") -> None:
    """Targeting rules: the system's set then changed, one org's set, the other's set then emptied (row deleted)."""
    staff = {"id": "staff", "conditions": [{"attribute": "email", "operator": "ends_with", "values": ["@acme.com"]}],
             "variant": "on"}  # fmt: skip
    split = {"id": "dach", "conditions": [{"attribute": "country", "operator": "in", "values": ["DE", "AT"]}],
             "split": [{"name": "light", "weight": 500}, {"name": "dark", "weight": 500}]}  # fmt: skip
    log.add(rules_change(flag, None, staff))
    log.add(rules_change(flag, None, {**staff, "id": "acme-staff"}))
    log.add(rules_change("c.theme", org, split))
    log.add(rules_change(flag, other, staff))
    log.add(rules_change(flag, other))


THEMES = {"light": "#ffffff", "dark": "#000000", "blue": "#0000ff"}
LIMITS = {"small": {"rows": 10, "export": False}, "large": {"rows": 1000, "export": True}, "list": [1, 2.5, "x"]}


def _typed_rows(log: EventLog, org: str, other: str) -> None:
    """Typed flags (a string flag updated once, an object flag) and a variant or a split chosen at every level."""
    theme = {"flag_key": "c.theme", "group": "c", "kind": FlagKind.RELEASE, "value_type": ValueType.STRING,
             "values": THEMES, "default_variant": "light", "off_variant": "dark"}  # fmt: skip
    log.add(FlagDefined(description="a string flag", **theme))  # type: ignore[arg-type]
    log.add(FlagUpdated(description="the colour theme", **theme))  # type: ignore[arg-type]
    log.add(
        FlagDefined(
            flag_key="c.limits", group="c", kind=FlagKind.PERMISSION, description="an object flag",
            value_type=ValueType.OBJECT, values=LIMITS, default_variant="small", off_variant="small",
        )
    )  # fmt: skip
    log.system("c.theme", True)
    log.add(VariantSelected(flag_key="c.theme", level=Level.SYSTEM, variant="blue"))
    log.org(org, "c.limits", True)
    split = (Variant(name="small", weight=700), Variant(name="large", weight=300))
    log.add(VariantSelected(flag_key="c.limits", level=Level.ORG, org_id=org, split=split))
    log.add(VariantSelected(flag_key="c.theme", level=Level.PLATFORM, org_id=org, platform=Platform.META,
                            variant="dark"))  # fmt: skip
    log.add(VariantSelected(flag_key="c.theme", level=Level.USER, org_id=org, user_id="u1", variant="light"))
    log.add(VariantSelected(flag_key="c.limits", level=Level.ORG, org_id=other, variant="list"))
