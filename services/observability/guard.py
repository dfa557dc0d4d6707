"""The cardinality guard: a label takes at most `limit` distinct values; the rest, and unknown ones, are one series.

A label such as the flag key comes from requests, so without a bound a caller
could grow the page (and Prometheus's memory) without end. The first `limit`
values that `known` accepts keep their own series; every other value is counted
under `OTHER`, so totals stay exact.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["OTHER", "LabelGuard"]

OTHER = "__other__"


class LabelGuard:
    """Maps a raw label value to itself or to `OTHER`."""

    __slots__ = ("_known", "_limit", "_seen")

    def __init__(self, *, limit: int, known: Callable[[str], bool] | None = None) -> None:
        self._limit = limit
        self._known = known
        self._seen: set[str] = set()

    def __call__(self, value: str) -> str:
        if value in self._seen:
            return value
        if len(self._seen) >= self._limit or (self._known is not None and not self._known(value)):
            return OTHER
        self._seen.add(value)
        return value

    def __len__(self) -> int:
        return len(self._seen)
