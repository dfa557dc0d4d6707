"""Time travel over an in-memory log: at the instant of each event it answers what the live
fold answered just after that event, whether it starts from snapshots or from the first event."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from events import Envelope, FlagDefined, OrgOverrideSet
from flagcore import evaluate, fold
from flagcore.history import scope_of_stream
from services.command.eventstore.parts import Part, Run
from services.command.timetravel.errors import BadInstant, UnknownFlag, UnknownOrg
from services.command.timetravel.service import Asked, TimeTravel
from services.command.timetravel.snapshots import take
from tests.support.factories import LogBuilder
from tests.support.fold_changes import FLAGS, ORGS, PLATFORMS, USERS, changes


class MemoryHistory:
    """The event store and snapshot tables as lists; what PostgresHistory does, without SQL."""

    def __init__(self, log: list[Envelope]) -> None:
        self.log = log
        self.parts: list[tuple[Part, datetime]] = []
        self.runs: list[Run] = []
        self.checked = 0

    def _scope(self, scope: str) -> list[Envelope]:
        return [e for e in self.log if scope_of_stream(e.stream) == scope]

    async def org_known(self, org_id: str) -> bool:
        return bool(self._scope(org_id))

    async def nearest_part(
        self, scope: str, instant: datetime, prefixes: tuple[str, ...] | None = None
    ) -> Part | None:  # the whole document: `restore(keep=…)` cuts it down
        fits = [p for p, until in self.parts if p.scope == scope and until <= instant]
        return max(fits, key=lambda p: p.sequence, default=None)

    async def part_is_sound(self, part: Part) -> bool:
        self.checked += 1
        whole = next(p for p, _ in self.parts if (p.scope, p.sequence) == (part.scope, part.sequence))
        stored = {(e.stream, e.version): e.hash for e in self.log}
        covered = [e for e in self._scope(part.scope) if e.sequence <= part.sequence]
        return len(covered) == part.events and all(stored.get((s, v)) == h for s, v, h, _ in whole.doc["heads"])

    async def events(
        self, scope: str, *, after: int, until: datetime, prefixes: tuple[str, ...] | None = None
    ) -> list[Envelope]:
        return [
            e for e in self._scope(scope)
            if e.sequence > after and e.occurred_at <= until and (prefixes is None or e.stream.startswith(prefixes))
        ]  # fmt: skip

    async def cutoff(self, settle_seconds: float) -> int | None:
        return self.log[-1].sequence if self.log else None

    async def latest_run(self) -> Run | None:
        return self.runs[-1] if self.runs else None

    async def latest_parts(self) -> list[Part]:
        latest: dict[str, Part] = {}
        for part, _ in self.parts:
            if part.scope not in latest or part.sequence > latest[part.scope].sequence:
                latest[part.scope] = part
        return list(latest.values())

    async def stream_events(self, *, after: int, upto: int):  # type: ignore[no-untyped-def]
        for e in self.log:
            if after < e.sequence <= upto:
                yield e.sequence, e.occurred_at, e

    async def save_parts(self, parts) -> None:  # type: ignore[no-untyped-def]
        self.parts += parts

    async def save_run(self, run: Run) -> None:
        self.runs.append(run)


async def _no_kafka(sequence: int, start: dict[int, int]) -> dict[int, int]:
    return {0: sequence}


def _clock(log: list[Envelope]):  # type: ignore[no-untyped-def]
    end = log[-1].occurred_at + timedelta(hours=1) if log else datetime.now().astimezone()
    return lambda: end


@settings(max_examples=60, deadline=None)
@given(st.lists(changes, min_size=1, max_size=40), st.lists(st.integers(1, 40), max_size=3), st.integers(1, 5))
def test_the_past_is_the_live_answer_just_after_each_event(change_list, cuts, every) -> None:
    builder = LogBuilder()
    builder.append(FlagDefined(flag_key=FLAGS[0], group="g"))
    builder.extend(change_list)
    log = builder.events
    history = MemoryHistory([])
    for cut in sorted(cuts):  # snapshot runs part-way through the log, as the job would take them
        history.log = log[:cut]
        asyncio.run(take(history, _no_kafka, every=every))
    history.log = log
    assert bool(history.runs) == bool(cuts)
    travel = TimeTravel(history, clock=_clock(log))
    for i, event in enumerate(log):
        live = fold(log[: i + 1])
        for org in ORGS:
            if not any(scope_of_stream(e.stream) == org for e in log):
                continue
            views = asyncio.run(travel.at(Asked(org, PLATFORMS[0], USERS[0]), event.occurred_at))
            for key in FLAGS:
                expected = evaluate(live.catalog, live.tenant(org), key, platform=PLATFORMS[0], user_id=USERS[0])
                got = views[key].evaluation if key in views else None
                assert got == (expected if key in live.catalog.definitions else None)
    assert history.checked <= len(history.parts)  # every part used was sound, and checked once


def test_each_snapshot_is_checked_once_per_process() -> None:
    log = LogBuilder().extend(
        [FlagDefined(flag_key=FLAGS[0], group="g")]
        + [OrgOverrideSet(flag_key=FLAGS[0], org_id=ORGS[0], enabled=i % 2 == 0) for i in range(10)]
    )
    history = MemoryHistory(log)
    asyncio.run(take(history, _no_kafka, every=3))
    travel = TimeTravel(history, clock=_clock(log))
    for _ in range(3):
        asyncio.run(travel.at(Asked(ORGS[0]), log[-1].occurred_at))
    assert history.checked == 2  # the system part and the org's


def test_bad_questions_name_their_field() -> None:
    log = LogBuilder().extend(
        [FlagDefined(flag_key=FLAGS[0], group="g"), OrgOverrideSet(flag_key=FLAGS[0], org_id=ORGS[0], enabled=True)]
    )
    travel = TimeTravel(MemoryHistory(log), clock=_clock(log))
    now = log[-1].occurred_at
    cases = [
        (travel.at(Asked(ORGS[0]), now + timedelta(days=1)), BadInstant, "at"),
        (travel.at(Asked("nobody"), now), UnknownOrg, "org"),
        (travel.at(Asked(ORGS[0]), datetime.fromisoformat("0001-01-01T00:00:00+05:00")), BadInstant, "at"),
        (travel.at(Asked(ORGS[0]), now, "no.such.flag"), UnknownFlag, "flag"),
        (travel.at(Asked(ORGS[0]), log[0].occurred_at - timedelta(seconds=1), FLAGS[0]), UnknownFlag, "flag"),
        (travel.diff(Asked(ORGS[0]), now, now - timedelta(seconds=1)), BadInstant, "to"),
        (travel.diff(Asked(ORGS[0]), now, now + timedelta(days=1)), BadInstant, "to"),
    ]
    for coroutine, error, field in cases:
        with pytest.raises(error) as caught:
            asyncio.run(coroutine)
        assert caught.value.field == field


def test_a_diff_names_the_flags_whose_answer_or_settings_changed() -> None:
    builder = LogBuilder()
    builder.extend([FlagDefined(flag_key=k, group="g") for k in FLAGS])
    start = builder.events[-1].occurred_at
    builder.extend([OrgOverrideSet(flag_key=FLAGS[1], org_id=ORGS[0], enabled=True)])
    travel = TimeTravel(MemoryHistory(builder.events), clock=_clock(builder.events))
    changed = asyncio.run(travel.diff(Asked(ORGS[0]), start, builder.events[-1].occurred_at))
    assert [(k, b.evaluation.value, a.evaluation.value) for k, b, a in changed] == [(FLAGS[1], False, True)]
    assert changed[0][2].evaluation.source.event_id == str(builder.events[-1].event_id)


def test_a_long_run_saves_its_parts_as_it_goes_and_a_redo_after_a_crash_agrees() -> None:
    changes_ = [FlagDefined(flag_key=FLAGS[0], group="g")] + [
        OrgOverrideSet(flag_key=FLAGS[0], org_id=ORGS[i % 2], enabled=i % 4 < 2) for i in range(300)
    ]
    log = LogBuilder().extend(changes_)
    history = MemoryHistory(log)

    async def crash_after_saving(run: Run) -> None:
        raise OSError("gone before the run was recorded")

    history.save_run = crash_after_saving  # type: ignore[method-assign]
    with pytest.raises(OSError):
        asyncio.run(take(history, _no_kafka, every=1))
    assert len(history.parts) > 200 and not history.runs  # saved in flushes of 100, before the end
    del history.save_run
    asyncio.run(take(history, _no_kafka, every=1))  # redone from the start, over the saved parts
    assert len(history.runs) == 1
    travel = TimeTravel(history, clock=_clock(log))
    for i in (0, 1, 150, len(log) - 1):
        live = fold(log[: i + 1])
        for org in ORGS:
            got = asyncio.run(travel.at(Asked(org), log[i].occurred_at))[FLAGS[0]].evaluation
            assert got == evaluate(live.catalog, live.tenant(org), FLAGS[0])


def test_segments_travel_in_time_with_the_rules_that_name_them() -> None:
    """A segment changed, shadowed by the org's own, archived: at every instant the answer of the fold then,
    from snapshots cut anywhere (a part carries the scope's segments) or from the first event."""
    from events import Level, SegmentArchived, SegmentChanged, SegmentDefined, TargetingRulesSet

    def members(*users: str) -> list[dict[str, object]]:
        return [{"attribute": "targeting_key", "operator": "in", "values": list(users)}]

    org, user = ORGS[0], USERS[0]
    rules = [{"id": "beta", "conditions": [{"operator": "in_segment", "values": ["beta"]}], "variant": "on"}]
    log = LogBuilder().extend([
        FlagDefined(flag_key=FLAGS[0], group="g"),
        TargetingRulesSet.model_validate({"flag_key": FLAGS[0], "level": Level.ORG, "org_id": org, "rules": rules}),
        SegmentDefined.model_validate({"segment_key": "beta", "name": "B", "conditions": members(user)}),
        SegmentChanged.model_validate({"segment_key": "beta", "name": "B", "conditions": members("someone")}),
        SegmentDefined.model_validate(
            {"segment_key": "beta", "org_id": org, "name": "Ours", "conditions": members(user)}
        ),
        SegmentArchived(segment_key="beta", org_id=org),
    ])  # fmt: skip
    answers = []
    for cut in (None, 2, 4):
        history = MemoryHistory(log if cut is None else log[:cut])
        if cut is not None:
            asyncio.run(take(history, _no_kafka, every=1))
            history.log = log
        travel = TimeTravel(history, clock=_clock(log))
        for i, event in enumerate(log):
            live = fold(log[: i + 1])
            got = asyncio.run(travel.at(Asked(org, None, user), event.occurred_at))[FLAGS[0]].evaluation
            assert got == evaluate(live.catalog, live.tenant(org), FLAGS[0], user_id=user)
            answers.append(got.reason.value)
    assert answers[:6] == ["DEFAULT", "DEFAULT", "TARGETING_MATCH", "DEFAULT", "TARGETING_MATCH", "DEFAULT"]
