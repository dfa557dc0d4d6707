"""The command service's `/metrics`: its requests, rejections by error code, auth denials, the outbox and the relay.

Read at scrape time from what the app holds (its wiring's relay, its auth gate): the outbox backlog
(events accepted, not yet acknowledged by Kafka; -1 when Postgres cannot say),
whether this process leads the relay and reaches Kafka, what it published and
when it last did (`time() - flagstream_relay_last_publish_timestamp_seconds`
while the backlog is above 0 is the relay's lag).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from fastapi import FastAPI

from services.auth.http import gate_of
from services.command.dependencies import wiring_of
from services.command.errors import StoreUnavailable
from services.observability import Metrics
from services.observability.asgi import install
from services.observability.tally import DeltaTally

__all__ = ["install_metrics"]


class _Relay(Protocol):
    async def lag(self) -> int: ...

    def status(self) -> dict[str, Any]: ...


class _Gate(Protocol):
    @property
    def denials(self) -> Any: ...


def install_metrics(app: FastAPI) -> Metrics:
    """Serve the command service's metrics at `/metrics` and count its requests and rejections."""
    return _install(app, relay=lambda: wiring_of(app).relay, gate=lambda: gate_of(app))


def _install(app: FastAPI, *, relay: Callable[[], _Relay | None], gate: Callable[[], _Gate | None]) -> Metrics:
    metrics = Metrics()
    rejections = metrics.counter("command_rejections", "Requests the command API refused, by error code.", ("code",))
    install(app, metrics, errors=rejections)
    backlog = metrics.gauge("outbox_backlog_events", "Events accepted but not yet acknowledged by Kafka (-1: unknown).")
    leader = metrics.gauge("relay_leader", "1 while this process is the active relay.")
    kafka_up = metrics.gauge("relay_kafka_up", "0 while the relay cannot reach Kafka.")
    published_at = metrics.gauge("relay_last_publish_timestamp_seconds", "When the relay last published events.")
    published = metrics.counter("relay_published_events", "Events this process published to Kafka.")
    found = metrics.counter(
        "relay_found_published_events",
        "Unmarked events found in Kafka already (acknowledgement lost in a crash or outage), marked, not re-sent.",
    )
    denials = DeltaTally(
        metrics.counter("auth_denials", "Requests refused by authentication or authorisation, by cause.", ("cause",)),
        lambda: None if (g := gate()) is None else g.denials,
    )
    counted = [0, 0]  # of the relay's running totals, what `published` and `found` hold already

    async def refresh() -> None:
        denials.flush()
        current = relay()
        if current is None:
            return
        status = current.status()
        if status["published_total"] > counted[0]:
            published.inc(status["published_total"] - counted[0])
            counted[0] = status["published_total"]
        if status["found_published_total"] > counted[1]:
            found.inc(status["found_published_total"] - counted[1])
            counted[1] = status["found_published_total"]
        leader.set(int(status["leader"]))
        kafka_up.set(int(status["kafka"] == "ok"))
        if status.get("published_at") is not None:
            published_at.set(status["published_at"])
        try:
            backlog.set(await current.lag())
        except StoreUnavailable:
            backlog.set(-1)

    metrics.before_scrape(refresh)
    return metrics
