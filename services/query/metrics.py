"""The query service's metrics: evaluations (exposures) by flag, variant, reason and level, latencies, caches.

Orgs and users are never labels. The hot path (`services.query.fastpath`,
`services.query.site`) only increments tallies (`services.observability.tally`);
`flush` moves them into the metrics once a second and before a page is rendered,
so with several workers (multiprocess mode, `python -m services.query`) every
count reaches the page within a second, and none is lost. A flag key the
catalogue does not hold, or past the first `MAX_FLAGS`, is counted as `__other__`.

`MeasuredEvaluator` counts what the use cases evaluate; a finished answer served
again (a plan's, a kept one) carries its `Exposures` and is counted by `exposed`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from fastapi import FastAPI

from events.vocabulary import FLAG_KEY_RE
from flagcore import Evaluation
from services.observability import LabelGuard, Metrics
from services.observability.asgi import install
from services.observability.registry import LATENCY_BUCKETS
from services.observability.tally import CounterTally, DeltaTally, Exposures, ExposureTally, HistogramTally
from services.query.contexts import Context
from services.query.ofrep import Evaluator

__all__ = ["ENDPOINTS", "MAX_FLAGS", "MeasuredEvaluator", "QueryMetrics", "exposures_of", "labels_of"]

MAX_FLAGS = 2000  # flag keys with a series of their own; the rest are `__other__`
FLUSH_SECONDS = 1.0
# The hot path's endpoints: (route template, method) of each, as the app's own routes name them.
ENDPOINTS = {
    "ofrep_single": ("/ofrep/v1/evaluate/flags/{key}", "POST"),
    "ofrep_bulk": ("/ofrep/v1/evaluate/flags", "POST"),
    "native": ("/v1/orgs/{org_id}/flags/{flag_key}", "GET"),
}
Labels = tuple[str, ...]


def labels_of(evaluation: Evaluation) -> Labels:
    """(flag, variant, reason, level) of one evaluation; "" for what it has not (an error's variant, level)."""
    e, level = evaluation, evaluation.level
    return (e.flag_key, e.variant or "", e.reason.value, "" if level is None else level.value)


def exposures_of(evaluations: list[Evaluation] | tuple[Evaluation, ...]) -> Exposures:
    return Exposures([labels_of(e) for e in evaluations])


class QueryMetrics:
    """One app's metrics (one worker's, in multiprocess mode) and the tallies its hot path counts into."""

    def __init__(self) -> None:
        self.metrics = Metrics()
        m = self.metrics
        self._flags = LabelGuard(limit=MAX_FLAGS, known=lambda key: FLAG_KEY_RE.match(key) is not None)
        evaluations = m.counter(
            "evaluations", "Flag evaluations answered (exposures), by flag, variant, reason and deciding level.",
            ("flag", "variant", "reason", "level"),
        )
        self._evaluations = CounterTally(evaluations, self._fold_flag)
        self._exposures = ExposureTally(self._evaluations)
        self._latency = HistogramTally(
            m.histogram("evaluation_duration_seconds", "Time to answer an evaluation request, by endpoint.",
                        ("endpoint",)),
            LATENCY_BUCKETS,
        )
        self._answers = CounterTally(
            m.counter("query_answers", "Evaluation answers by where they came from (plan, kept, computed).",
                      ("source",))
        )
        self._document_reads = m.counter(
            "query_document_reads", "Documents read, by the level that had them (local, shared, source).", ("source",)
        )
        self._denials = m.counter(
            "auth_denials", "Requests refused by authentication or authorisation, by cause.", ("cause",)
        )
        self._http: CounterTally | None = None
        self._deltas: list[DeltaTally] = []

    # --- wiring ----------------------------------------------------------------------------------------------

    def install(self, app: FastAPI, *, documents: Callable[[], Mapping[str, int] | None],
                denials: Callable[[], Mapping[str, int] | None]) -> None:
        """Serve `/metrics` on `app`, count its requests; read the document cache's and the gate's counts."""
        http = install(app, self.metrics)
        self._http = CounterTally(http.requests, _hot_route)
        self._deltas = [DeltaTally(self._document_reads, documents), DeltaTally(self._denials, denials)]
        self.metrics.before_scrape(self.flush)

    def flush(self) -> None:
        self._exposures.flush()
        self._evaluations.flush()
        self._latency.flush()
        self._answers.flush()
        if self._http is not None:
            self._http.flush()
        for delta in self._deltas:
            delta.flush()

    def _fold_flag(self, labels: Labels) -> Labels:
        return (self._flags(labels[0]), *labels[1:])

    # --- the hot path: a dict increment each -----------------------------------------------------------------

    def evaluated(self, evaluation: Evaluation) -> None:
        self._evaluations.add(labels_of(evaluation))

    def evaluated_all(self, evaluations: list[Evaluation]) -> None:
        add = self._evaluations.add
        for evaluation in evaluations:
            add(labels_of(evaluation))

    def exposed(self, exposures: Exposures, source: str) -> None:
        """An answer served again (`source`: "plan" or "kept"): the evaluations it holds."""
        self._exposures.add(exposures)
        self._answers.add((source,))

    def computed(self) -> None:
        self._answers.add(("computed",))

    def answered(self, endpoint: str, status: int, seconds: float) -> None:
        """A hot request answered: its latency and its HTTP count."""
        self._latency.observe((endpoint,), seconds)
        http = self._http
        if http is not None:
            http.add((endpoint, status))  # type: ignore[arg-type]  # folded into (route, method, status) at flush


def _hot_route(labels: tuple[Any, ...]) -> Labels:
    route, method = ENDPOINTS[labels[0]]
    return (route, method, str(labels[1]))


class MeasuredEvaluator:
    """The evaluation use cases, counting each evaluation they answer."""

    __slots__ = ("_inner", "_metrics")

    def __init__(self, inner: Evaluator, metrics: QueryMetrics) -> None:
        self._inner = inner
        self._metrics = metrics

    async def evaluate(
        self, org_id: str, flag_key: str, *, platform: str | None, user_id: str | None, context: Context = None
    ) -> Evaluation:
        result = await self._inner.evaluate(org_id, flag_key, platform=platform, user_id=user_id, context=context)
        self._metrics.evaluated(result)
        return result

    async def evaluate_all(
        self, org_id: str, *, platform: str | None, user_id: str | None, context: Context = None
    ) -> list[Evaluation]:
        results = await self._inner.evaluate_all(org_id, platform=platform, user_id=user_id, context=context)
        self._metrics.evaluated_all(results)
        return results
