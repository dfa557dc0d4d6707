"""The rebuild's progress bar on stderr (`flaglog.progress`: in place on a terminal, lines elsewhere)."""

from __future__ import annotations

import sys
import time
from typing import TextIO

from flaglog.progress import ProgressLine


class Bar:
    """Events done, events/s and ETA."""

    def __init__(self, total: int, *, stream: TextIO | None = sys.stderr) -> None:
        self.total, self.done = total, 0
        self.started = time.monotonic()
        self._line = ProgressLine(stream)

    def add(self, n: int) -> None:
        self.done += n
        finished = self.done >= self.total
        if finished or self._line.due():
            self._line.show(self.line(time.monotonic()), force=finished)

    def line(self, now: float) -> str:
        elapsed = max(now - self.started, 1e-9)
        rate = self.done / elapsed
        left = max(self.total - self.done, 0)
        eta = f"{left / rate:5.0f}s" if rate > 0 else "    ?"
        filled = int(30 * min(self.done, self.total) / self.total) if self.total else 30
        return f"rebuild [{'#' * filled}{'.' * (30 - filled)}] {self.done:,}/{self.total:,} {rate:,.0f} ev/s ETA {eta}"

    def finish(self) -> None:
        self._line.end()
