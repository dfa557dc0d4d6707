"""What the routes and the hot path use, in one typed object, and the FastAPI dependencies that hand it out.

`Wiring` is made with the app (`api.create_app`) and connected by the composition
root (`bootstrap`) when the lifespan starts, or at once by a test that hands in
wired use cases. The app holds it as `app.state.wiring`, read only by `wiring_of`;
routes ask for its parts as typed parameters (`Documents`, `Evaluations`, `Wired`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, FastAPI, Request

from services.infra.settings import Settings
from services.query.changes_stream import ChangeHub
from services.query.errors import Unavailable
from services.query.metrics import MeasuredEvaluator, QueryMetrics
from services.query.ofrep import Evaluator
from services.query.ports import OverrideCounts, Snapshots
from services.query.service import QueryService
from services.query.usage import CountingEvaluator, UsageCounter, UsageStore

NOT_STARTED = "the service is starting"


@dataclass(eq=False)
class Wiring:
    """The use cases and the stores behind the routes; None until connected."""

    settings: Settings
    service: QueryService | None = None
    evaluator: Evaluator | None = None  # the use cases, counted when there is a store for the counts
    ping: Callable[[], Awaitable[bool]] | None = None  # is Postgres reachable (`/readyz`)
    usage: UsageStore | None = None  # where the counts of every worker add up (Redis)
    override_counts: OverrideCounts | None = None
    snapshots: Snapshots | None = None
    changes: ChangeHub | None = None  # OFREP's change streams (services.query.changes_stream), set by the lifespan
    counter: UsageCounter = field(default_factory=UsageCounter)
    metrics: QueryMetrics = field(default_factory=QueryMetrics)  # services.query.metrics: /metrics

    def connect(
        self,
        service: QueryService,
        *,
        ping: Callable[[], Awaitable[bool]],
        usage: UsageStore | None = None,
        override_counts: OverrideCounts | None = None,
        snapshots: Snapshots | None = None,
    ) -> None:
        """Plug the use cases in; evaluations are counted only when `usage` can take the counts (never piled up)."""
        self.service = service
        self.usage = usage
        self.ping = ping
        self.override_counts = override_counts
        self.snapshots = snapshots
        counted = service if usage is None else CountingEvaluator(service, self.counter)
        self.evaluator = MeasuredEvaluator(counted, self.metrics)

    def documents(self) -> QueryService:
        """The use cases (uncounted); the hot path's answer cache and plans check their documents."""
        if self.service is None:
            raise Unavailable("postgres", NOT_STARTED)
        return self.service

    def evaluations(self) -> Evaluator:
        """The evaluation use cases, counted (services.query.usage): what every evaluation route calls."""
        if self.evaluator is None:
            raise Unavailable("postgres", NOT_STARTED)
        return self.evaluator

    def count_evaluations(self, org_id: str, flag_keys: tuple[str, ...]) -> None:
        """Count what the hot path served from its answer cache or plans, as the counted use cases would have."""
        if self.usage is not None:
            self.counter.count_all(org_id, flag_keys)


def wiring_of(app: FastAPI) -> Wiring:
    wiring: Wiring = app.state.wiring
    return wiring


def _wiring(request: Request) -> Wiring:
    return wiring_of(request.app)


def _documents(request: Request) -> QueryService:
    return wiring_of(request.app).documents()


def _evaluations(request: Request) -> Evaluator:
    return wiring_of(request.app).evaluations()


Wired = Annotated[Wiring, Depends(_wiring)]
Documents = Annotated[QueryService, Depends(_documents)]
Evaluations = Annotated[Evaluator, Depends(_evaluations)]
