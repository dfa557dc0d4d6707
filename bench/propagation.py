"""Change propagation: from the command API's 2xx to the query service answering the new value.

    .venv/bin/python -m bench.propagation [--changes 500]

Targets on loopback: p50 < 50 ms, p99 < 250 ms, tightened since to p50 < 20 ms,
p99 < 100 ms (the in-process SDK's, `bench.sdk_propagation`). Each change flips
an org override; the clock starts when the PUT returns and stops at the first query answer carrying the new value
(polled back to back). Between changes the bench pauses a random 0 to `--pause` seconds
(default 0.4): changes come apart in real use, and back-to-back changes hid a 200 ms idle
sleep in the projector's poll (now gone; `services/projector/app.py`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import tempfile
import time
from pathlib import Path

import httpx

from bench.harness import Progress, drop_database, isolated_settings, percentiles
from bench.plots import latency_plot
from tests.conftest import start_stack

KEY = "ai.insights.enabled"
RESULTS = Path(__file__).parent / "results"


async def measure(command_url: str, query_url: str, changes: int, headers: dict[str, str], pause: float) -> list[float]:
    async with httpx.AsyncClient(timeout=10, headers=headers) as http:
        defined = await http.post(f"{command_url}/v1/flags", json={"key": KEY, "group": "ai", "reason": "bench"})
        defined.raise_for_status()
        samples: list[float] = []
        progress = Progress("propagate", changes)
        rng = random.Random(7)
        for i in range(changes):
            await asyncio.sleep(rng.uniform(0, pause))
            org = f"org-{i % 50}"
            wanted = bool(i // 50 % 2 == 0)
            put = await http.put(
                f"{command_url}/v1/orgs/{org}/flags/{KEY}", json={"enabled": wanted, "reason": "bench"}
            )
            put.raise_for_status()
            start = time.perf_counter()
            while True:
                response = await http.get(f"{query_url}/v1/orgs/{org}/flags/{KEY}")
                answer = response.json() if response.status_code == 200 else {}  # 404 until defined
                if answer.get("value") is wanted and answer.get("level") == "org":
                    break
                if time.perf_counter() - start > 10:
                    raise SystemExit(f"change {i} not visible after 10 s")
            samples.append((time.perf_counter() - start) * 1000)
            progress.update(i + 1)
        progress.finish()
        return samples


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--changes", type=int, default=500)
    parser.add_argument("--pause", type=float, default=0.4, help="longest random pause between changes, seconds")
    args = parser.parse_args()
    settings = await isolated_settings("propagation")
    stack = start_stack(settings, Path(tempfile.mkdtemp()))
    try:
        samples = await measure(stack.command_url, stack.query_url, args.changes, stack.headers, args.pause)
    finally:
        stack.stop()
        await drop_database(settings)
    stats = percentiles(samples)
    targets = {"p50<50 ms, p99<250 ms": (50, 250), "p50<20 ms, p99<100 ms": (20, 100)}
    verdict = "; ".join(
        f"{'meets' if stats['p50'] < p50 and stats['p99'] < p99 else 'MISSES'} {name}"
        for name, (p50, p99) in targets.items()
    )
    print(
        f"propagation over {stats['n']} changes (0-{args.pause:g} s apart): p50 {stats['p50']:.1f} ms, "
        f"p90 {stats['p90']:.1f} ms, p99 {stats['p99']:.1f} ms, max {stats['max']:.1f} ms ({verdict})"
    )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "propagation.json").write_text(json.dumps({"samples_ms": samples, "stats": stats}, indent=1))
    latency_plot(
        {"command 2xx → query answers": samples},
        RESULTS / "propagation.png",
        title=f"Change propagation, {stats['n']} changes 0-{args.pause:g} s apart (loopback, 2 cores)",
    )
    print(f"wrote {RESULTS / 'propagation.png'}")


if __name__ == "__main__":
    asyncio.run(main())
