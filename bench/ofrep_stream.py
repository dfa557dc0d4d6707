"""OFREP's change stream: from the command API's 2xx to the provider's `refetchEvaluation` on the SSE stream.

    .venv/bin/python -m bench.ofrep_stream [--changes 200] [--pause 0.2]

Target (issue 14): p99 < 100 ms on loopback. One provider holds the org's stream
(`GET /ofrep/v1/changes`, as the bulk answer's `eventStreams` names it); each change
flips an org override through the command API; the clock starts when the PUT
returns and stops when the stream's event arrives (read by `tests.support.sse_client`
in the same process). Between changes a random pause of 0 to `--pause` seconds.

`--compare` also polls the native API back to back after each change, as `bench.propagation` does, and prints
how much later (or earlier) the event came than the new value became visible: what the stream adds to the
pipeline (command, relay, Kafka, projector, invalidation) that every reader waits on. The polling loads the
machine, so the two runs' latencies differ.
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


async def measure(
    command_url: str, query_url: str, changes: int, headers: dict[str, str], pause: float, *, compare: bool = False
) -> tuple[list[float], list[float]]:
    """(command 2xx → event, ms per change; with `compare`, event minus value visible on the native API, ms)."""
    async with (
        httpx.AsyncClient(base_url=command_url, timeout=10, headers=headers) as http,
        httpx.AsyncClient(base_url=query_url, timeout=10) as query,
    ):
        (await http.post("/v1/flags", json={"key": KEY, "group": "bench", "reason": "bench"})).raise_for_status()
        made = await http.post("/v1/keys", json={"name": "bench", "role": "evaluator", "org_id": ORG, "reason": "b"})
        made.raise_for_status()
        key = made.json()["key"]
        async with EventStream(f"{query_url}/ofrep/v1/changes", bearer(key)) as stream:
            if stream.status != 200:
                raise SystemExit(f"the stream answered {stream.status}: {stream.body!r}")
            await stream.next_event(timeout=10)  # the refetch a new stream starts with
            samples: list[float] = []
            lead: list[float] = []
            progress = Progress("stream", changes)
            rng = random.Random(7)
            for i in range(changes):
                await asyncio.sleep(rng.uniform(0, pause))
                put = await http.put(f"/v1/orgs/{ORG}/flags/{KEY}", json={"enabled": i % 2 == 0, "reason": "bench"})
                put.raise_for_status()
                done = time.perf_counter()
                arriving = asyncio.create_task(stream.next_event(timeout=10))
                if compare:
                    visible = await _visible(query, bearer(key), i % 2 == 0)
                event = await arriving
                if not event.is_refetch:
                    raise SystemExit(f"change {i}: unexpected event {event}")
                samples.append((event.at - done) * 1000)
                if compare:
                    lead.append((event.at - visible) * 1000)
                progress.update(i + 1)
            progress.finish()
    return samples, lead


async def _visible(query: httpx.AsyncClient, headers: dict[str, str], wanted: bool) -> float:
    """When the native API first answers `wanted` at the org level (polled back to back)."""
    deadline = time.perf_counter() + 10
    while time.perf_counter() < deadline:
        answer = await query.get(f"/v1/orgs/{ORG}/flags/{KEY}", headers=headers)
        body = answer.json() if answer.status_code == 200 else {}
        if body.get("value") is wanted and body.get("level") == "org":
            return time.perf_counter()
    raise SystemExit("a change never became visible on the native API")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--changes", type=int, default=200)
    parser.add_argument("--pause", type=float, default=0.2, help="longest random pause between changes, seconds")
    parser.add_argument("--compare", action="store_true", help="also poll the native API: event vs value visible")
    args = parser.parse_args()
    settings = await isolated_settings("ofrep_stream")
    stack = start_stack(settings, Path(tempfile.mkdtemp()))
    try:
        samples, lead = await measure(
            stack.command_url, stack.query_url, args.changes, stack.headers, args.pause, compare=args.compare
        )
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
    if lead:
        ordered = sorted(lead)
        print(
            f"event minus new value visible on the native API (polled): median {ordered[len(ordered) // 2]:+.1f} ms, "
            f"min {ordered[0]:+.1f} ms, max {ordered[-1]:+.1f} ms"
        )
    RESULTS.mkdir(exist_ok=True)
    result = {"samples_ms": samples, "stats": stats, "event_minus_visible_ms": lead}
    (RESULTS / "ofrep_stream.json").write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    asyncio.run(main())
