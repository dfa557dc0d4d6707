"""Shorthands over `tests.support.factories.LogBuilder` for the projector and query tests, and their tests.

`EventLog` names changes by level (`org`, `platform`, `user`, `rollout`, ...) and maps
the sealed, hash-chained events to Kafka records, so a test can say what happened
in one line per event and produce exactly what the relay would publish.
"""

from __future__ import annotations

import random

from events import (
    GENESIS_HASH,
    Actor,
    AnyChange,
    Envelope,
    FlagDefined,
    FlagKind,
    Level,
    OrgOverrideCleared,
    OrgOverrideSet,
    Platform,
    PlatformOverrideCleared,
    PlatformOverrideSet,
    Record,
    RolloutPercentageSet,
    SystemDefaultSet,
    UserOverrideCleared,
    UserOverrideSet,
    from_record,
    to_record,
)
from flagcore import fold
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
        return self.add(_org(org, key, enabled))

    def platform(self, org: str, platform: str, key: str, enabled: bool | None) -> Envelope:
        return self.add(_platform(org, platform, key, enabled))

    def user(self, org: str, user: str, key: str, enabled: bool | None) -> Envelope:
        return self.add(_user(org, user, key, enabled))

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


def _org(org: str, key: str, enabled: bool | None) -> AnyChange:
    if enabled is None:
        return OrgOverrideCleared(flag_key=key, org_id=org)
    return OrgOverrideSet(flag_key=key, org_id=org, enabled=enabled)


def _platform(org: str, platform: str, key: str, enabled: bool | None) -> AnyChange:
    p = Platform(platform)
    if enabled is None:
        return PlatformOverrideCleared(flag_key=key, org_id=org, platform=p)
    return PlatformOverrideSet(flag_key=key, org_id=org, platform=p, enabled=enabled)


def _user(org: str, user: str, key: str, enabled: bool | None) -> AnyChange:
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
            change = _org(org, key, value)
        elif roll < 0.55:
            change = _platform(org, rng.choice(platforms), key, value)
        elif roll < 0.85:
            change = _user(org, f"user-{rng.randrange(users)}", key, value)
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


# --- the builder's own tests ------------------------------------------------------


def test_events_chain_per_stream_and_decode_from_their_records() -> None:
    log = EventLog()
    log.define("a.b")
    first = log.org("org-1", "a.b", True)
    second = log.org("org-1", "a.b", False)
    assert (first.version, second.version) == (1, 2)
    assert first.prev_hash == GENESIS_HASH and second.prev_hash == first.hash
    assert second.previous == {"enabled": True, "rollout_percentage": None}
    for envelope, record in zip(log.events, log.records(), strict=True):
        assert from_record(record.value, record.headers) == envelope
        assert record.key == envelope.partition_key.encode()


def test_random_log_folds_without_errors_and_is_reproducible() -> None:
    a = random_log(400, orgs=["o1", "o2"], seed=3)
    b = random_log(400, orgs=["o1", "o2"], seed=3)
    assert [e.data for e in a.events] == [e.data for e in b.events]
    state = fold(a.events)
    assert len(state.catalog.definitions) == 8
    assert set(state.tenants) <= {"o1", "o2"}
    assert len(a.events) == 400
