"""Long work's progress (replay, rebuild, load) as a person or a log file would want it.

On a terminal, one line rewritten in place a few times a second. Anywhere else (a pipe, a log
file, a CI console) a carriage return only makes one endless line, so whole lines are printed
instead, fewer of them: at most one every `every_piped` seconds, and the last one always.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import TextIO


class ProgressLine:
    def __init__(
        self,
        stream: TextIO | None,
        *,
        every: float = 0.2,
        every_piped: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._stream = stream
        self.interactive = stream is not None and _is_terminal(stream)
        self._every = every if self.interactive else every_piped
        self._clock = clock
        self._shown = -math.inf
        self._open = False  # a terminal line not ended yet

    def due(self) -> bool:
        """Would `show` print now? (So a caller formats its text only when it will be shown.)"""
        return self._stream is not None and self._clock() - self._shown >= self._every

    def show(self, text: str, *, force: bool = False) -> None:
        """Print `text` as the current state, if a line is due (or `force`: the last one, say)."""
        stream = self._stream
        if stream is None or not (force or self.due()):
            return
        self._shown = self._clock()
        if self.interactive:
            stream.write("\r" + text)
            self._open = True
        else:
            stream.write(text + "\n")
        stream.flush()

    def end(self) -> None:
        """Close the terminal's line, so what follows starts on its own."""
        if self._stream is not None and self._open:
            self._stream.write("\n")
            self._stream.flush()
            self._open = False


def _is_terminal(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty()) if isatty is not None else False
    except ValueError:  # a closed stream
        return False
