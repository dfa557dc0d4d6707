"""A projector killed (SIGKILL) and restarted: how long until a change made meanwhile is answered.

    .venv/bin/python -m bench.projector_restart [--rounds 5]

Two deployments in turn, the same in all but the consumer group membership: dynamic (the
restarted consumer joins as a new member and waits for the killed one's session to time out
and the group to rebalance) and static (`FLAGS_PROJECTOR_INSTANCE_ID`, Kafka's KIP-345: the
restarted instance takes its partitions back at once). Each round kills the projector, makes
one change through the command API, starts the projector again and polls the query service
until the change is answered. Two figures per round: from the restart to caught up (what an
operator sees, including the process's own start-up), and from the process's first log line
of consuming ("FastStream app starting") to caught up (what membership decides).
Target (issue 16): kill → caught up < 3 s.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import httpx

from bench.harness import drop_database, isolated_settings
from tests.conftest import start_stack

KEY = "restart.probe"
STARTING = "FastStream app starting"


def run(instance_id: str | None, rounds: int) -> list[tuple[float, float]]:
    overrides = {} if instance_id is None else {"projector_instance_id": instance_id}
    settings = asyncio.run(isolated_settings("restart", **overrides))
    logs = Path(tempfile.mkdtemp(prefix="bench-restart-"))
    stack = start_stack(settings, logs)
    figures = []
    try:
        c, q = stack.command_url, stack.query_url
        with httpx.Client(timeout=10, headers=stack.headers) as http:
            assert http.post(f"{c}/v1/flags", json={"key": KEY, "group": "bench", "reason": "bench"}).status_code == 201
            made = http.post(f"{c}/v1/keys", json={"name": "bench", "role": "evaluator", "org_id": "acme",
                                                   "reason": "bench"})
            evaluator = {"Authorization": f"Bearer {made.json()['key']}"}
            for i in range(rounds):
                stack.projector.kill()
                wrote = http.put(f"{c}/v1/orgs/acme/flags/{KEY}", json={"enabled": i % 2 == 0, "reason": "bench"})
                assert wrote.status_code == 201, wrote.text
                version = wrote.json()["version"]
                starts = stack.projector.log_path.read_text().count(STARTING)
                restarted = time.monotonic()
                stack.projector.start(timeout=60)
                consuming = None
                while True:
                    if consuming is None and stack.projector.log_path.read_text().count(STARTING) > starts:
                        consuming = time.monotonic()
                    answer = httpx.get(f"{q}/v1/orgs/acme/flags/{KEY}", headers=evaluator, timeout=5).json()
                    if (answer.get("event") or {}).get("version") == version:
                        break
                    time.sleep(0.01)
                done = time.monotonic()
                figures.append((done - restarted, done - (consuming or restarted)))
                label = instance_id or "dynamic"
                print(f"  {label:>10} round {i + 1}: restart → caught up {figures[-1][0]:.2f} s, "
                      f"consuming → caught up {figures[-1][1]:.2f} s", flush=True)
    finally:
        stack.stop()
        asyncio.run(drop_database(settings))
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    results = {"dynamic": run(None, args.rounds), "static": run("bench-projector-1", args.rounds)}
    print(f"\nprojector kill -9 → restart → caught up, {args.rounds} rounds each (median, max)")
    for label, figures in results.items():
        total, consuming = [f[0] for f in figures], [f[1] for f in figures]
        print(f"  {label:>8} membership: restart → caught up {statistics.median(total):.2f} s (max {max(total):.2f}), "
              f"consuming → caught up {statistics.median(consuming):.2f} s (max {max(consuming):.2f})")


if __name__ == "__main__":
    main()
