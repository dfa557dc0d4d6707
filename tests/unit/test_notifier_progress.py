"""What the notifier may commit."""

from __future__ import annotations

from dataclasses import dataclass

from services.notifier.progress import Progress


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
