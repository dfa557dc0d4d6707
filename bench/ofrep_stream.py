"""OFREP's change stream: from the command API's 2xx to the provider's `refetchEvaluation` on the SSE stream.

    .venv/bin/python -m bench.ofrep_stream [--changes 200] [--pause 0.2]

Target (issue 14): p99 < 100 ms on loopback. One provider holds the org's stream
(`GET /ofrep/v1/changes`, as the bulk answer's `eventStreams` names it); each change
flips an org override through the command API; the clock starts when the PUT
returns and stops when the stream's event arrives (read by `tests.support.sse_client`
in the same process). Between changes a random pause of 0 to `--pause` seconds.
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
from tests.conftest import start_stack
from tests.support.auth import bearer
from tests.support.sse_client import EventStream

KEY = "bench.stream.flag"
ORG = "bench-stream"
RESULTS = Path(__file__).parent / "results"
TARGET_P99_MS = 100.0


async def measure(command_url: str, query_url: str, changes: int, headers: dict[str, str], pause: float) -> list[float]:
    async with httpx.AsyncClient(base_url=command_url, timeout=10, headers=headers) as http:
        (await http.post("/v1/flags", json={"key": KEY, "group": "bench", "reason": "bench"})).raise_for_status()
        made = await http.post("/v1/keys", json={"name": "bench", "role": "evaluator", "org_id": ORG, "reason": "b"})
        made.raise_for_status()
        key = made.json()["key"]
        async with EventStream(f"{query_url}/ofrep/v1/changes", bearer(key)) as stream:
            if stream.status != 200:
                raise SystemExit(f"the stream answered {stream.status}: {stream.body!r}")
            await stream.next_event(timeout=10)  # the refetch a new stream starts with
            samples: list[float] = []
            progress = Progress("stream", changes)
            rng = random.Random(7)
            for i in range(changes):
                await asyncio.sleep(rng.uniform(0, pause))
                put = await http.put(f"/v1/orgs/{ORG}/flags/{KEY}", json={"enabled": i % 2 == 0, "reason": "bench"})
                put.raise_for_status()
                done = time.perf_counter()
                event = await stream.next_event(timeout=10)
                if not event.is_refetch:
                    raise SystemExit(f"change {i}: unexpected event {event}")
                samples.append((event.at - done) * 1000)
                progress.update(i + 1)
            progress.finish()
    return samples


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--changes", type=int, default=200)
    parser.add_argument("--pause", type=float, default=0.2, help="longest random pause between changes, seconds")
    args = parser.parse_args()
    settings = await isolated_settings("ofrep_stream")
    stack = start_stack(settings, Path(tempfile.mkdtemp()))
    try:
        samples = await measure(stack.command_url, stack.query_url, args.changes, stack.headers, args.pause)
    finally:
        stack.stop()
        await drop_database(settings)
    stats = percentiles(samples)
    verdict = "meets" if stats["p99"] < TARGET_P99_MS else "MISSES"
    print(
        f"command 2xx → refetchEvaluation over {stats['n']} changes (0-{args.pause:g} s apart): "
        f"p50 {stats['p50']:.1f} ms, p90 {stats['p90']:.1f} ms, p99 {stats['p99']:.1f} ms, max {stats['max']:.1f} ms "
        f"({verdict} p99 < {TARGET_P99_MS:g} ms)"
    )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "ofrep_stream.json").write_text(json.dumps({"samples_ms": samples, "stats": stats}, indent=1))


if __name__ == "__main__":
    asyncio.run(main())
