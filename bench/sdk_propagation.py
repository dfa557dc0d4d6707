"""Change propagation to the in-process SDK: from the command API's 2xx to `FlagClient` answering the new value.

    .venv/bin/python -m bench.sdk_propagation [--changes 500]

Target: p50 < 20 ms, p99 < 100 ms, as for the query service (`bench.propagation`). Each change flips the org's override
of one flag; the clock starts when the PUT returns and stops at the first
`is_enabled` answer carrying the new value (polled every 0.2 ms). The path is the
whole pipeline: outbox → relay → Kafka → the SDK's own consumer → fold.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path

import httpx

from bench.harness import Progress, drop_database, isolated_settings, percentiles
from bench.plots import latency_plot
from flagsdk import FlagClient
from tests.conftest import start_stack
from tests.support.sdk import sdk_settings

KEY = "ai.insights.enabled"
ORG = "acme"
RESULTS = Path(__file__).parent / "results"
PLOTS = Path(__file__).resolve().parents[1] / "docs" / "bench"  # committed beside the figures


def measure(stack_command_url: str, headers: dict[str, str], client: FlagClient, changes: int) -> list[float]:
    samples: list[float] = []
    progress = Progress("sdk", changes)
    with httpx.Client(timeout=10, headers=headers) as http:
        for i in range(changes):
            wanted = i % 2 == 0
            body = {"enabled": wanted, "reason": "bench"}
            put = http.put(f"{stack_command_url}/v1/orgs/{ORG}/flags/{KEY}", json=body)
            put.raise_for_status()
            start = time.perf_counter()
            while client.is_enabled(KEY) is not wanted:
                if time.perf_counter() - start > 10:
                    raise SystemExit(f"change {i} not in the SDK after 10 s: {client.status()}")
                time.sleep(0.0002)
            samples.append((time.perf_counter() - start) * 1000)
            progress.update(i + 1)
    progress.finish()
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--changes", type=int, default=500)
    args = parser.parse_args()
    settings = asyncio.run(isolated_settings("sdkprop"))
    stack = start_stack(settings, Path(tempfile.mkdtemp()))
    try:
        with httpx.Client(base_url=stack.command_url, timeout=10, headers=stack.headers) as http:
            http.post("/v1/flags", json={"key": KEY, "group": "ai", "reason": "bench"}).raise_for_status()
            body = {"name": "bench sdk", "role": "evaluator", "org_id": ORG, "reason": "bench"}
            key = http.post("/v1/keys", json=body).json()["key"]
        with FlagClient.from_settings(sdk_settings(settings), api_key=key, org_id=ORG) as client:
            client.wait_until_current()
            samples = measure(stack.command_url, stack.headers, client, args.changes)
            status = client.status()
    finally:
        stack.stop()
        asyncio.run(drop_database(settings))
    stats = percentiles(samples)
    verdict = "meets" if stats["p50"] < 20 and stats["p99"] < 100 else "MISSES"
    print(f"SDK propagation over {stats['n']} changes: p50 {stats['p50']:.1f} ms, p90 {stats['p90']:.1f} ms, "
          f"p99 {stats['p99']:.1f} ms, max {stats['max']:.1f} ms ({verdict} p50<20 ms, p99<100 ms); "
          f"folded {status.applied}, duplicates {status.duplicates}")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "sdk_propagation.json").write_text(json.dumps({"samples_ms": samples, "stats": stats}, indent=1))
    latency_plot({"command 2xx → SDK answers": samples}, PLOTS / "sdk_propagation.png",
                 title=f"Change propagation to the in-process SDK, {stats['n']} changes (loopback, 2 cores)")
    print(f"wrote {PLOTS / 'sdk_propagation.png'}")


if __name__ == "__main__":
    main()
