"""Progress of long work: rewritten in place on a terminal, whole lines (fewer) anywhere else."""

from __future__ import annotations

import io

from flaglog.progress import ProgressLine


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def shown(stream: io.StringIO, clock: Clock, steps: list[tuple[float, str]], last: str) -> str:
    line = ProgressLine(stream, every=0.2, every_piped=2.0, clock=clock)
    for at, text in steps:
        clock.now = at
        line.show(text)
    line.show(last, force=True)
    line.end()
    return stream.getvalue()


STEPS = [(0.0, "1/4"), (0.1, "2/4"), (0.5, "3/4")]


def test_a_terminal_gets_one_line_rewritten_in_place_and_ended() -> None:
    assert shown(Terminal(), Clock(), STEPS, "4/4") == "\r1/4\r3/4\r4/4\n"


def test_a_pipe_gets_whole_lines_no_more_than_one_every_two_seconds_and_always_the_last() -> None:
    out = shown(io.StringIO(), Clock(), [*STEPS, (2.5, "3/4 later")], "4/4")
    assert "\r" not in out
    assert out.splitlines() == ["1/4", "3/4 later", "4/4"]


def test_nothing_is_written_without_a_stream() -> None:
    line = ProgressLine(None)
    assert not line.due()
    line.show("x", force=True)
    line.end()  # no stream to write to, and no error


def test_end_on_a_terminal_adds_no_blank_line_when_nothing_was_shown() -> None:
    stream = Terminal()
    ProgressLine(stream).end()
    assert stream.getvalue() == ""
