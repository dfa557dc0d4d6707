"""A service's metrics and its `/metrics` page: the product's one prefix, Prometheus text or OpenMetrics.

Each `Metrics` owns its registry (never the library's global one), so several
apps in one test process do not collide. In multiprocess mode (a forking
service, `services.observability.multiprocess`) the page reads every process's
values from the shared directory instead; the values themselves are written by
the same metric objects, which the library backs with that directory.

Names follow Prometheus's conventions: `flagstream_<what>_<unit>`, counters end
in `_total` (the library appends it), durations are `_seconds` histograms.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics
from prometheus_client.exposition import choose_encoder
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

__all__ = ["LATENCY_BUCKETS", "PREFIX", "Metrics", "Refresh"]

PREFIX = "flagstream_"
# Seconds: an evaluation takes tens of microseconds in process; a batch or a request to Postgres, milliseconds.
LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
Refresh = Callable[[], Awaitable[None] | None]

disable_created_metrics()  # no `_created` series beside every counter: Prometheus detects resets itself


class Metrics:
    """The metrics of one service process, and the page that shows them (with its other processes', if any)."""

    def __init__(self, *, multiprocess_dir: str | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._multiprocess_dir = multiprocess_dir or os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        self._refreshes: list[Refresh] = []
        self._collectors: list[Collector] = []

    @property
    def multiprocess(self) -> bool:
        return self._multiprocess_dir is not None

    def counter(self, name: str, documentation: str, labels: Sequence[str] = ()) -> Counter:
        return Counter(PREFIX + name, documentation, labels, registry=self.registry)

    def gauge(self, name: str, documentation: str, labels: Sequence[str] = (), *, mode: str = "livesum") -> Gauge:
        """`mode`: how the processes' values combine in multiprocess mode (the library's `multiprocess_mode`)."""
        return Gauge(PREFIX + name, documentation, labels, registry=self.registry, multiprocess_mode=mode)  # type: ignore[arg-type]

    def histogram(
        self, name: str, documentation: str, labels: Sequence[str] = (), *, buckets: Sequence[float] = LATENCY_BUCKETS
    ) -> Histogram:
        return Histogram(PREFIX + name, documentation, labels, registry=self.registry, buckets=buckets)

    def collect_with(self, collector: Collector) -> None:
        """A collector whose samples are made at scrape time (a state read, not counted): this process's only."""
        self.registry.register(collector)
        self._collectors.append(collector)

    def before_scrape(self, refresh: Refresh) -> None:
        """Run `refresh` before each page is rendered: set gauges from a store, flush a hot path's tallies."""
        self._refreshes.append(refresh)

    async def page(self, accept: str | None) -> tuple[bytes, str]:
        """(body, content type): OpenMetrics when `accept` asks for it, else Prometheus text 0.0.4."""
        for refresh in self._refreshes:
            pending = refresh()
            if pending is not None:
                await pending
        encode, content_type = choose_encoder(accept or "")
        return encode(self._exposed()), content_type

    def _exposed(self) -> CollectorRegistry:
        if self._multiprocess_dir is None:
            return self.registry
        shown = CollectorRegistry()
        MultiProcessCollector(shown, path=self._multiprocess_dir)
        for collector in self._collectors:
            shown.register(collector)
        return shown
