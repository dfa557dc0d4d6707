"""Evaluation latency over HTTP on the query service, cached and uncached, with wrk.

    .venv/bin/python -m bench.evaluation_latency [--seconds 10]

Targets: cached p50 < 1 ms and p99 < 2 ms; uncached p99 < 10 ms.
"cached": one org and user asked again and again (in-process cache hit).
"cold user": a new user id on every request, so the user's overrides come from
Redis (miss) and then Postgres under RLS. "no cache": the query service as
`bench.query_uncached` builds it, with no cache, reading every document from Postgres.
wrk runs one connection (-c1) for latency and 16 for throughput.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import httpx

from bench.harness import drop_database, isolated_settings
from bench.plots import bar_plot
from tests.conftest import start_stack
from tests.support.auth import admin_key
from tests.support.processes import ServiceProcess, free_port

KEY = "ai.insights.enabled"
ORG = "acme"
RESULTS = Path(__file__).parent / "results"
COLD_USER_LUA = """
counter = 0
request = function()
  counter = counter + 1
  return wrk.format("GET", "/v1/orgs/acme/flags/ai.insights.enabled?platform=tiktok&user=cold-" ..
    math.random(1, 1000000000) .. "-" .. counter)
end
"""


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found is None:
        subprocess.run(["apt-get", "install", "-y", "wrk"], check=True, stdout=subprocess.DEVNULL)
        found = shutil.which("wrk")
    assert found is not None
    return found


def wrk(url: str, *, key: str, connections: int, seconds: int, script: str | None = None) -> dict[str, float]:
    args = [ensure_wrk(), "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-H", f"Authorization: Bearer {key}"]
    if script:
        path = Path(tempfile.mkstemp(suffix=".lua")[1])
        path.write_text(script)
        args += ["-s", str(path)]
    out = subprocess.run([*args, url], check=True, capture_output=True, text=True).stdout
    result = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))}  # type: ignore[union-attr]
    for pct, value, unit in re.findall(r"^\s+(50|75|90|99)%\s+([\d.]+)(us|ms|s)\s*$", out, re.M):
        result[f"p{pct}"] = float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        raise SystemExit(f"wrk saw {non2xx.group(1)} error responses:\n{out}")
    return result


async def seed(command_url: str, headers: dict[str, str]) -> None:
    async with httpx.AsyncClient(timeout=10, headers=headers) as http:
        await http.post(f"{command_url}/v1/flags", json={"key": KEY, "group": "ai", "reason": "bench"})
        await http.put(f"{command_url}/v1/flags/{KEY}/system", json={"enabled": False, "reason": "bench"})
        await http.put(f"{command_url}/v1/orgs/{ORG}/flags/{KEY}",
                       json={"enabled": True, "rollout_percentage": 50, "reason": "bench"})
        await http.put(f"{command_url}/v1/orgs/{ORG}/platforms/tiktok/flags/{KEY}",
                       json={"enabled": True, "reason": "bench"})


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    args = parser.parse_args()
    settings = await isolated_settings("latency")
    logs = Path(tempfile.mkdtemp())
    stack = start_stack(settings, logs)
    results: dict[str, dict[str, float]] = {}
    try:
        await seed(stack.command_url, stack.headers)
        key = admin_key(settings)
        await asyncio.sleep(1.0)  # let the projector apply the seed
        hot = f"{stack.query_url}/v1/orgs/{ORG}/flags/{KEY}?platform=tiktok&user=u-42"
        results["cached, 1 connection"] = wrk(hot, key=key, connections=1, seconds=args.seconds)
        results["cached, 16 connections"] = wrk(hot, key=key, connections=16, seconds=args.seconds)
        results["cold user, 1 connection"] = wrk(
            stack.query_url, key=key, connections=1, seconds=args.seconds, script=COLD_USER_LUA)
        port = free_port()
        uncached = ServiceProcess(
            "query", settings.model_copy(update={"query_port": port}), logs,
            f"http://127.0.0.1:{port}/healthz", module="bench.query_uncached")
        uncached.log_path = logs / "query-uncached.log"
        uncached.start()
        try:
            results["no cache, 1 connection"] = wrk(
                f"http://127.0.0.1:{port}/v1/orgs/{ORG}/flags/{KEY}?platform=tiktok&user=u-42",
                key=key, connections=1, seconds=args.seconds)
        finally:
            uncached.stop()
    finally:
        stack.stop()
        await drop_database(settings)
    for name, r in results.items():
        print(f"{name:<26} {r['rps']:>9,.0f} req/s   p50 {r['p50']:.2f} ms   p90 {r['p90']:.2f} ms   "
              f"p99 {r['p99']:.2f} ms")
    cached, cold, none = (results["cached, 1 connection"], results["cold user, 1 connection"],
                          results["no cache, 1 connection"])
    print(f"targets: cached p50<1 ms {'met' if cached['p50'] < 1 else 'MISSED'}, "
          f"cached p99<2 ms {'met' if cached['p99'] < 2 else 'MISSED'}, "
          f"uncached p99<10 ms {'met' if max(cold['p99'], none['p99']) < 10 else 'MISSED'}")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "evaluation_latency.json").write_text(json.dumps(results, indent=1))
    bar_plot({f"{k} p99": v["p99"] for k, v in results.items()} | {f"{k} p50": v["p50"] for k, v in results.items()},
             RESULTS / "evaluation_latency.png", title="Query service evaluation latency (wrk, loopback)",
             unit="milliseconds")


if __name__ == "__main__":
    asyncio.run(main())
