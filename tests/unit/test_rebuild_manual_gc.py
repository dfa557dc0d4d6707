"""The rebuild's hand-run garbage collection (`Collector`): off while a replay runs, cycles found on schedule."""

from __future__ import annotations

import gc
import weakref

from services.projector.rebuild.manual_gc import Collector


class Node:
    def __init__(self) -> None:
        self.me = self  # a cycle: only the cyclic collector frees it


def test_cycles_are_collected_every_so_many_records_and_the_collector_is_put_back() -> None:
    was = gc.isenabled()
    gc.enable()
    try:
        collector = Collector(every=10)
        try:
            assert not gc.isenabled()
            first = Node()
            gone = weakref.ref(first)
            del first
            collector.consumed(9)
            assert gone() is not None  # not yet: no automatic collection either
            collector.consumed(1)
            assert gone() is None
            kept = Node()  # alive at the collection: frozen, out of later collections' way
            collector.consumed(10)
            assert gc.get_freeze_count() > 0
        finally:
            collector.stop()
        assert gc.isenabled() and gc.get_freeze_count() == 0
        assert kept.me is kept
    finally:
        if not was:
            gc.disable()


def test_a_collector_started_with_the_automatic_one_off_leaves_it_off() -> None:
    was = gc.isenabled()
    gc.disable()
    try:
        Collector(every=1).stop()
        assert not gc.isenabled()
    finally:
        if was:
            gc.enable()
