"""`FlagClient.staleness()` as Prometheus gauges, read at scrape time, on the application's own registry.

Imported only when an application passes `metrics_registry=` (prometheus-client is the SDK's
`metrics` extra). One series per client, labelled by its org: an application that follows
two orgs exports two.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from flagsdk.client import FlagClient

__all__ = ["LAG_RECORDS", "STALENESS_SECONDS", "export"]

STALENESS_SECONDS = "flagstream_sdk_staleness_seconds"
LAG_RECORDS = "flagstream_sdk_lag_records"


class _StalenessCollector(Collector):
    def __init__(self, client: FlagClient) -> None:
        self._client = client

    def collect(self) -> Iterator[GaugeMetricFamily]:
        now = self._client.staleness()
        seconds = GaugeMetricFamily(
            STALENESS_SECONDS,
            "Seconds since the SDK last held everything on the topic (0: current).",
            labels=("org",),
        )
        seconds.add_metric((self._client.org_id,), now.seconds)
        yield seconds
        records = GaugeMetricFamily(LAG_RECORDS, "Records on the topic the SDK has not folded yet.", labels=("org",))
        if now.records is not None:
            records.add_metric((self._client.org_id,), now.records)
        yield records


def export(client: FlagClient, registry: CollectorRegistry) -> Callable[[], None]:
    """Register `client`'s gauges on `registry`; returns what unregisters them."""
    collector = _StalenessCollector(client)
    registry.register(collector)
    return lambda: registry.unregister(collector)
