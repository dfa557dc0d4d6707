"""Prometheus metrics for every service: one name prefix, one exposition, guarded labels, hot-path tallies.

`registry.Metrics` makes a service's metrics (always `flagstream_`-prefixed) and
renders its page (Prometheus text or OpenMetrics, as the scraper's `Accept`
asks); `guard.LabelGuard` folds unknown or excess label values into `__other__`;
`tally` counts on a hot path in plain dicts and flushes into the real metrics
off it; `multiprocess` sets up a forking service's shared directory; `asgi`
counts an ASGI app's requests and serves `/metrics`; `endpoint` is the small
HTTP server for a service that has no other (the projector).
"""

from services.observability.guard import OTHER, LabelGuard
from services.observability.registry import PREFIX, Metrics

__all__ = ["OTHER", "PREFIX", "LabelGuard", "Metrics"]
