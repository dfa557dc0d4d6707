"""Finished OFREP answers (serialised, with their ETag) served again while nothing they came from can have changed.

An OFREP answer is a function of the caller's scope (its role and org: all that
`authorize` reads), the route, the request body, the documents evaluated (the
catalogue, the org's, the user's) and the time (scheduled steps). So it is kept
under (role, org, route, body) and served again only while
- the document cache is online (subscribed to invalidations) and its
  `generation` is the one read before evaluating: an invalidation, a clear or a
  document stored bumps it;
- the clock is before the first scheduled instant, in those documents, after
  the moment evaluation began, and within the documents' TTL.
Authentication still runs on every request (a revoked key is refused), and a
served answer is counted as the evaluations it holds (`UsageCounter`).
Only 200s are kept: errors are cheap and some depend on more than the key.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from datetime import UTC, datetime

from flagcore import Evaluation
from flagcore.plans import first_change
from services.observability.tally import Exposures
from services.query.contexts import Context
from services.query.metrics import exposures_of
from services.query.ofrep import Answer, Evaluator
from services.query.service import QueryService

__all__ = ["AnswerCache", "Kept", "Recorder"]


@dataclass(frozen=True, slots=True)
class Kept:
    answer: Answer
    org_id: str
    flag_keys: tuple[str, ...]  # what serving it again counts
    exposures: Exposures  # and its evaluations, for the metrics
    generation: int
    until: float  # seconds since the epoch: the first instant it may be wrong


class Recorder:
    """The evaluator, noting whom and what it evaluated: what a kept answer depends on and counts."""

    __slots__ = ("_inner", "evaluations", "flag_keys", "org_id", "user_id")

    def __init__(self, inner: Evaluator) -> None:
        self._inner = inner
        self.org_id: str | None = None
        self.user_id: str | None = None
        self.flag_keys: tuple[str, ...] = ()
        self.evaluations: tuple[Evaluation, ...] = ()

    async def evaluate(
        self, org_id: str, flag_key: str, *, platform: str | None, user_id: str | None, context: Context = None
    ) -> Evaluation:
        result = await self._inner.evaluate(org_id, flag_key, platform=platform, user_id=user_id, context=context)
        self.org_id, self.user_id, self.flag_keys = org_id, user_id, (flag_key,)
        self.evaluations = (result,)
        return result

    async def evaluate_all(
        self, org_id: str, *, platform: str | None, user_id: str | None, context: Context = None
    ) -> list[Evaluation]:
        results = await self._inner.evaluate_all(org_id, platform=platform, user_id=user_id, context=context)
        self.org_id, self.user_id, self.flag_keys = org_id, user_id, tuple(e.flag_key for e in results)
        self.evaluations = tuple(results)
        return results


class AnswerCache:
    """Answers of one worker, over `service`'s document cache."""

    __slots__ = ("_clock", "_kept", "_max", "_shared", "service")

    def __init__(self, service: QueryService, *, max_entries: int = 10_000, clock: Callable[[], float] = time.time):
        self.service = service
        self._max = max_entries
        self._clock = clock
        self._kept: OrderedDict[Hashable, Kept] = OrderedDict()
        self._shared: dict[str, tuple[int, float]] = {}  # org -> (generation, first change of catalogue and org)

    def __len__(self) -> int:
        return len(self._kept)

    def get(self, key: Hashable) -> Kept | None:
        kept = self._kept.get(key)
        if kept is None:
            return None
        documents = self.service.cache
        if documents.online and kept.generation == documents.generation and self._clock() < kept.until:
            return kept
        del self._kept[key]
        return None

    def start(self) -> tuple[int, float]:
        """(generation, time) to read before evaluating: what `keep` checks the answer against."""
        return self.service.cache.generation, self._clock()

    async def keep(self, key: Hashable, answer: Answer, recorder: Recorder, started: tuple[int, float]) -> None:
        """Keep a 200 computed since `started`, unless a document changed meanwhile."""
        generation, began = started
        documents = self.service.cache
        if answer.status != 200 or recorder.org_id is None or not documents.online:
            return
        until = await self._until(recorder.org_id, recorder.user_id, began)
        if documents.generation != generation:  # read after the documents: a change while reading them counts
            return
        if len(self._kept) >= self._max:
            self._kept.popitem(last=False)  # the oldest; O(1), where a dict's first key is found by a scan
        exposures = exposures_of(recorder.evaluations)
        self._kept[key] = Kept(answer, recorder.org_id, recorder.flag_keys, exposures, generation, until)

    async def _until(self, org_id: str, user_id: str | None, began: float) -> float:
        """The first scheduled instant after `began` in the documents evaluated, or the documents' TTL if sooner."""
        after = datetime.fromtimestamp(began, UTC)
        generation = self.service.cache.generation
        shared = self._shared.get(org_id)
        if shared is None or shared[0] != generation or shared[1] <= began:
            # The catalogue's and the org's: the same for every user of the org until a document changes.
            org = await self.service.org(org_id)
            settings = [*(await self.service.catalog()).catalog.system.values(), *org.org.values()]
            shared = (generation, first_change([*settings, *org.platform.values()], after))
            if len(self._shared) >= self._max:
                self._shared.clear()
            self._shared[org_id] = shared
        until = min(began + self.service.cache.ttl, shared[1])
        if user_id is not None:
            until = min(until, first_change((await self.service.user(org_id, user_id)).user.values(), after))
        return until

