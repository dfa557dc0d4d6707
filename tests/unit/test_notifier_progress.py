"""What the notifier may commit, and the subscriptions file it reads."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest

from events import FlagKind
from services.notifier.progress import Progress
from services.notifier.sources import FileSubscriptions, SubscriptionFileError, parse_subscriptions
from services.notifier.subscriptions import DestinationKind


@dataclass
class Flag:
    finished: bool = False

    def done(self) -> bool:
        return self.finished


def test_an_offset_is_committable_only_once_it_and_every_record_before_it_are_done() -> None:
    progress = Progress()
    slow, quick = Flag(), Flag()
    progress.add(0, 10, [slow])
    progress.add(0, 11, [])
    progress.add(0, 12, [quick])
    progress.add(1, 5, [])
    assert progress.committable() == {1: 6}
    quick.finished = True
    assert progress.committable() == {}  # 12 is done, but 10 before it is not
    slow.finished = True
    assert progress.committable() == {0: 13}
    assert progress.committable() == {} and progress.unfinished() == 0


def test_a_forgotten_partition_is_not_committed() -> None:
    progress = Progress()
    progress.add(2, 0, [])
    progress.forget([2])
    assert progress.committable() == {}


WEBHOOK = {"kind": "webhook", "url": "https://hooks.example/x", "secret": "whsec_QUJD"}


def test_a_subscriptions_file_is_parsed_into_subscriptions() -> None:
    [s] = parse_subscriptions(orjson.dumps([{"id": "ops", "org_id": "acme", "destination": WEBHOOK,
                                             "flag_pattern": "ops.*", "kinds": ["ops"], "paused": True}]))
    assert (s.id, s.org_id, s.flag_pattern, s.kinds, s.paused) == ("ops", "acme", "ops.*", {FlagKind.OPS}, True)
    assert s.destination.kind is DestinationKind.WEBHOOK


@pytest.mark.parametrize(
    ("entries", "named"),
    [
        ([{"id": "x", "destination": {**WEBHOOK, "kind": "email"}}], "0.destination.kind"),
        ([{"id": "x", "destination": {"kind": "webhook", "url": "https://h.example"}}], "secret"),
        ([{"id": "x", "destination": WEBHOOK, "levels": ["galaxy"]}], "0.levels"),
        ([{"id": "x", "destination": WEBHOOK}, {"id": "x", "destination": WEBHOOK}], "distinct"),
        ([{"id": "x", "destination": WEBHOOK, "colour": "red"}], "0.colour"),
    ],
)
def test_a_bad_subscriptions_file_is_refused_naming_the_field(entries: list, named: str) -> None:
    with pytest.raises(SubscriptionFileError, match=named):
        parse_subscriptions(orjson.dumps(entries))


async def test_the_file_is_read_again_when_it_changes_and_a_bad_edit_keeps_the_last_good_list(tmp_path: Path) -> None:
    path = tmp_path / "subs.json"
    path.write_bytes(orjson.dumps([{"id": "a", "destination": WEBHOOK}]))
    source = FileSubscriptions(path)
    assert [s.id for s in await source.current()] == ["a"]
    path.write_bytes(orjson.dumps([{"id": "a", "destination": WEBHOOK}, {"id": "bb", "destination": WEBHOOK}]))
    assert [s.id for s in await source.current()] == ["a", "bb"]
    path.write_bytes(b"[{not json")
    assert [s.id for s in await source.current()] == ["a", "bb"]
