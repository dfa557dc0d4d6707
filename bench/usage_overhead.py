"""What counting evaluations (services.query.usage) adds to one evaluation, in process.

    .venv/bin/python -m bench.usage_overhead [--calls 200000] [--rounds 5]

wrk over HTTP on this shared 2-core machine varies by tens of percent between runs,
far more than the counter costs, so this measures the counter alone: the same
evaluator called bare and through `CountingEvaluator`, in alternating rounds in one
process, best round of each. The difference is the cost per evaluation; compare it
with the ~30 µs the hot path spends per request (services/query/fastpath.py).
"""

from __future__ import annotations

import argparse
import asyncio
import time

from flagcore import Evaluation, Reason
from services.query.usage import CountingEvaluator, UsageCounter

ANSWER = Evaluation("ai.insights.enabled", True, Reason.STATIC)
BULK = [Evaluation(f"flag.{i}", True, Reason.STATIC) for i in range(10)]


class Bare:
    async def evaluate(self, org_id: str, flag_key: str, *, platform: str | None, user_id: str | None) -> Evaluation:
        return ANSWER

    async def evaluate_all(self, org_id: str, *, platform: str | None, user_id: str | None) -> list[Evaluation]:
        return BULK


async def _per_call(evaluator: Bare | CountingEvaluator, calls: int, bulk: bool) -> float:
    started = time.perf_counter()
    if bulk:
        for _ in range(calls):
            await evaluator.evaluate_all("acme", platform="meta", user_id="u1")
    else:
        for _ in range(calls):
            await evaluator.evaluate("acme", "ai.insights.enabled", platform="meta", user_id="u1")
    return (time.perf_counter() - started) / calls


async def main(calls: int, rounds: int) -> None:
    bare = Bare()
    counter = UsageCounter()
    counted = CountingEvaluator(bare, counter)
    for bulk, what in ((False, "single flag"), (True, "bulk, 10 flags")):
        best_bare = best_counted = float("inf")
        for _ in range(rounds):
            best_bare = min(best_bare, await _per_call(bare, calls, bulk))
            best_counted = min(best_counted, await _per_call(counted, calls, bulk))
            counter.drain()
        print(f"{what:15} bare {best_bare * 1e6:6.2f} µs   counted {best_counted * 1e6:6.2f} µs   "
              f"counting adds {(best_counted - best_bare) * 1e6:5.2f} µs per request")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(main(args.calls, args.rounds))
