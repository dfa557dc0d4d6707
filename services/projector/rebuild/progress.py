"""The rebuild's progress bar on stderr."""

from __future__ import annotations

import sys
import time
from typing import Any


class Bar:
    """One line on stderr: events done, events/s and ETA; rewritten at most every 0.2 s."""

    def __init__(self, total: int, *, stream: Any = sys.stderr) -> None:
        self.total, self.done, self.stream = total, 0, stream
        self.started = self._shown = time.monotonic()

    def add(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if now - self._shown >= 0.2 or self.done >= self.total:
            self._shown = now
            self.stream.write("\r" + self.line(now))
            self.stream.flush()

    def line(self, now: float) -> str:
        elapsed = max(now - self.started, 1e-9)
        rate = self.done / elapsed
        left = max(self.total - self.done, 0)
        eta = f"{left / rate:5.0f}s" if rate > 0 else "    ?"
        filled = int(30 * min(self.done, self.total) / self.total) if self.total else 30
        return f"rebuild [{'#' * filled}{'.' * (30 - filled)}] {self.done:,}/{self.total:,} {rate:,.0f} ev/s ETA {eta}"

    def finish(self) -> None:
        self.stream.write("\n")
        self.stream.flush()
