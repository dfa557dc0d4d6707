"""The projector's `/readyz`: ready while Postgres answers and every partition it owns is within the allowed lag.

Lag is `metrics.Lag.seconds`, what `flagstream_projector_lag_seconds` shows: while a
partition has records past the last one applied, that record's age. A projector
that owns no partition yet (starting, or waiting for a rebalance) is not ready either.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from services.observability.endpoint import Readiness
from services.projector.metrics import Lag

__all__ = ["ProjectorReadiness"]


class ProjectorReadiness:
    """Judges readiness from the partitions' `lags` and a `postgres` ping (True: it answered)."""

    def __init__(
        self,
        lags: Callable[[], Awaitable[dict[int, Lag] | None]],
        postgres: Callable[[], Awaitable[bool]],
        *,
        max_lag_seconds: float,
        retry_after: int = 5,
    ) -> None:
        self._lags = lags
        self._postgres = postgres
        self._max = max_lag_seconds
        self._retry_after = retry_after

    async def __call__(self) -> Readiness:
        if not await self._postgres():
            return self._not({"status": "unavailable", "postgres": "down"})
        lags = await self._lags()
        if not lags:
            return self._not({"status": "starting", "postgres": "ok", "partitions": []})
        seconds = {str(p): round(lag.seconds, 3) for p, lag in sorted(lags.items())}
        body = {"postgres": "ok", "lag_seconds": seconds, "max_lag_seconds": self._max}
        if any(lag.seconds > self._max for lag in lags.values()):
            return self._not({"status": "catching_up", **body})
        return Readiness(True, {"status": "ready", **body})

    def _not(self, body: dict[str, object]) -> Readiness:
        return Readiness(False, body, self._retry_after)
