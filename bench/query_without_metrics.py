"""The query service with its evaluation metrics switched off: for `bench.ofrep --metrics-off` only, never deployed.

    FLAGS_...=... .venv/bin/python -m bench.query_without_metrics

The same server as `python -m services.query` (the product's HTTP server, the
hot path, multiprocess mode), except that the app's `QueryMetrics` is replaced,
before the site is made, by one whose hot-path calls do nothing: no evaluation,
latency, request or answer-source tally. What is left of the metrics in this
build (a call to an empty method, two `perf_counter` reads per request, the
`Exposures` a plan makes once) is a few hundred nanoseconds at most, so the
difference between the two builds is, if anything, a little under what the
metrics cost. It lives in bench/ so that no service can be started without them.
"""

from __future__ import annotations

from flagcore import Evaluation
from services.infra.settings import Settings
from services.observability.tally import Exposures
from services.query.__main__ import serve
from services.query.bootstrap import app_from_env
from services.query.dependencies import wiring_of
from services.query.metrics import QueryMetrics
from services.query.site import QuerySite


class Unmeasured(QueryMetrics):
    """Counts nothing on the hot path."""

    def evaluated(self, evaluation: Evaluation) -> None:
        pass

    def evaluated_all(self, evaluations: list[Evaluation]) -> None:
        pass

    def exposed(self, exposures: Exposures, source: str) -> None:
        pass

    def computed(self) -> None:
        pass

    def answered(self, endpoint: str, status: int, seconds: float) -> None:
        pass


def site_from_env() -> QuerySite:
    app = app_from_env()
    wiring_of(app).metrics = Unmeasured()  # before the site's hot path and the lifespan's evaluator take it
    return QuerySite(app, cors=bool(Settings().cors_origins))


if __name__ == "__main__":
    serve("bench.query_without_metrics:site_from_env")
