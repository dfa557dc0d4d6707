"""OFREP over HTTP with wrk, single flag and bulk, at `-t1 -c16` and `-c64`; with `--peers`, Unleash Edge beside it.

    .venv/bin/python -m bench.ofrep [--seconds 10] [--rounds 2] [--peers] [--no-fastapi] [--metrics-off]
                                   [--scenarios ...]

The query service runs as `python -m services.query` (two workers on uvloop) on
a stack of its own, twice: as served (the product's HTTP server and the hot path,
`services.query.site`) and as `bench.query_asgi` builds it (the same app and
handlers behind FastAPI's routing on granian's ASGI), so the cost of the layers shows. Both use an
evaluator key of the org. Ten flags are seeded; the measured one has a 50%
sticky rollout at the org level, and the context names a user and a platform.
"single" and "bulk" repeat one context, so after the first the hot path answers
them from its answer cache (`services.query.answers`); "users" asks for a
different user each request (25,000 in turn, more than both workers' answer caches keep),
so every answer is computed.

`--metrics-off` adds the same server with its evaluation metrics switched off
(`bench.query_without_metrics`), alternating with the one served, so the table
shows what the metrics cost the hot path (target: at most 5% of throughput).

`--peers` adds Unleash Edge (Rust), offline from a features file holding the
same ten flags (the measured one a 50% `flexibleRollout` on `userId`), asked
through its frontend API: `/api/frontend/features/{name}` for one flag and
`/api/frontend` for all, with the same user. Edge is built once with
`cargo install unleash-edge --locked --no-default-features --root ~/.cache/flagstream/unleash-edge`
(about 8 minutes on 2 cores; `FLAGS_UNLEASH_EDGE` names another binary).

Each (server, scenario, connections) runs `--rounds` times, servers alternating,
and the table gives the mean. Target: at least Edge's throughput with a p99
no worse.

Where the processes run: wrk on CPU 0 and the servers on the other CPUs, so the
load generator never takes a server's core (standard practice; on this 2-core
machine each server gets one core, and both size themselves to it: flagstream
starts a worker per CPU it may use, Edge's tokio a thread per CPU). `--shared-cpus`
lets every process run anywhere, as the runs before 2026-11-30 did.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench.evaluation_latency import ensure_wrk
from bench.harness import drop_database, isolated_settings
from bench.plots import grouped_bar_plot
from tests.conftest import start_stack
from tests.support.auth import admin_headers, bearer
from tests.support.processes import ServiceProcess, free_port

RESULTS = Path(__file__).parent / "results"
KEY = "ai.insights.enabled"
ORG = "acme"
USER = "u-42"
OTHERS = [f"bench.flag-{i}" for i in range(1, 10)]
EDGE_CACHE = Path.home() / ".cache/flagstream/unleash-edge"
EDGE_TOKEN = "*:development.flagstreambenchtoken"
CONTEXT = {"context": {"targetingKey": USER, "platform": "tiktok"}}
USERS = 25_000  # "users": between two visits of a user, each worker computes more answers than it keeps (10,000)


@dataclass(frozen=True)
class Target:
    """What wrk sends for one scenario on one server."""

    url: str
    method: str
    headers: dict[str, str]
    body: bytes | None = None
    users: str | None = None  # a `{user}` template (the path or the body): a user of USERS per request, in turn

    def script(self) -> str:
        lines = [f'wrk.method = "{self.method}"']
        for name, value in self.headers.items():
            lines.append(f'wrk.headers["{name}"] = "{value}"')
        if self.body is not None:
            lines.append(f"wrk.body = '{self.body.decode()}'")
        if self.users is not None:
            path, body = ("nil", f"'{self.users}'") if self.body is not None else (f"'{self.users}'", "nil")
            lines += [
                "n = 0",
                "request = function()",
                f"  n = n % {USERS} + 1",
                '  local fill = function(t) return t and string.gsub(t, "{user}", "u-" .. n) end',
                f"  return wrk.format(nil, fill({path}), nil, fill({body}))",
                "end",
            ]
        return "\n".join(lines) + "\n"


def wrk(target: Target, *, connections: int, seconds: int, apart: bool = False) -> dict[str, float]:
    """wrk's figures; `apart`: wrk on WRK_CPU alone (`place_servers` put the servers on the others)."""
    script = Path(tempfile.mkstemp(suffix=".lua")[1])
    script.write_text(target.script())
    args = [ensure_wrk(), "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), target.url]
    placed = _on_wrk_cpu if apart else None
    out = subprocess.run(args, check=True, capture_output=True, text=True, preexec_fn=placed).stdout
    script.unlink()
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        raise SystemExit(f"wrk saw {non2xx.group(1)} error responses from {target.url}:\n{out}")
    result = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))}  # type: ignore[union-attr]
    for pct, value, unit in re.findall(r"^\s+(50|75|90|99)%\s+([\d.]+)(us|ms|s)\s*$", out, re.M):
        result[f"p{pct}"] = float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
    return result


WRK_CPU = 0


def place_servers() -> set[int]:
    """Run this process, and so every server it starts from now on, on every CPU but wrk's."""
    cpus = os.sched_getaffinity(0) - {WRK_CPU}
    if not cpus:
        raise SystemExit("--shared-cpus is needed on a machine with one CPU")
    os.sched_setaffinity(0, cpus)
    return cpus


def _on_wrk_cpu() -> None:
    os.sched_setaffinity(0, {WRK_CPU})


# --- flagstream ----------------------------------------------------------------------------------------------


async def seed(command_url: str, headers: dict[str, str]) -> str:
    """Ten flags, the measured one at 50% for the org; returns an evaluator key of the org."""
    async with httpx.AsyncClient(timeout=10, headers=headers) as http:

        async def call(method: str, path: str, **body: object) -> dict[str, object]:
            r = await http.request(method, f"{command_url}{path}", json={"reason": "bench", **body})
            assert r.status_code in (200, 201), r.text
            return r.json()  # type: ignore[no-any-return]

        for i, key in enumerate([KEY, *OTHERS]):
            await call("POST", "/v1/flags", key=key, group="bench")
            await call("PUT", f"/v1/flags/{key}/system", enabled=i % 2 == 0)
        await call("PUT", f"/v1/orgs/{ORG}/flags/{KEY}", enabled=True, rollout_percentage=50)
        made = await call("POST", "/v1/keys", name="bench evaluator", role="evaluator", org_id=ORG)
        return str(made["key"])


async def wait_for_seed(query_url: str, key: str, timeout: float = 30.0) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(headers=bearer(key), timeout=5) as http:
        while True:
            r = await http.post(f"{query_url}/ofrep/v1/evaluate/flags/{KEY}", json=CONTEXT)
            if r.status_code == 200 and r.json()["reason"] == "SPLIT":
                return r.json()  # type: ignore[no-any-return]
            if time.monotonic() > deadline:
                raise RuntimeError(f"seed not projected after {timeout}s: {r.status_code} {r.text}")
            await asyncio.sleep(0.1)


def flagstream_targets(url: str, key: str) -> dict[str, Target]:
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    body = json.dumps(CONTEXT, separators=(",", ":")).encode()
    return {
        "single": Target(f"{url}/ofrep/v1/evaluate/flags/{KEY}", "POST", headers, body),
        "bulk": Target(f"{url}/ofrep/v1/evaluate/flags", "POST", headers, body),
        "users": Target(f"{url}/ofrep/v1/evaluate/flags/{KEY}", "POST", headers, body,
                        users=body.decode().replace(USER, "{user}")),
        "native": Target(f"{url}/v1/orgs/{ORG}/flags/{KEY}?platform=tiktok&user={USER}", "GET",
                         {"Authorization": f"Bearer {key}"}),
    }


# --- Unleash Edge ----------------------------------------------------------------------------------------------


def edge_binary() -> Path:
    named = os.environ.get("FLAGS_UNLEASH_EDGE")
    binary = Path(named) if named else EDGE_CACHE / "bin/unleash-edge"
    if not binary.exists():
        raise SystemExit(
            f"no Unleash Edge at {binary}: build it once with\n"
            f"  cargo install unleash-edge --locked --no-default-features --root {EDGE_CACHE}"
        )
    return binary


def edge_features() -> dict[str, object]:
    """The same ten flags as Unleash client features: the measured one a 50% sticky rollout on userId."""

    def flag(name: str, enabled: bool, rollout: int) -> dict[str, object]:
        return {
            "name": name,
            "type": "release",
            "enabled": enabled,
            "project": "default",
            "stale": False,
            "impressionData": False,
            "variants": [],
            "strategies": [
                {
                    "name": "flexibleRollout",
                    "constraints": [],
                    "parameters": {"rollout": str(rollout), "stickiness": "userId", "groupId": name},
                }
            ],
        }

    features = [flag(KEY, True, 50)] + [flag(key, i % 2 == 1, 100) for i, key in enumerate(OTHERS)]
    return {"version": 2, "features": features}


class Edge:
    def __init__(self, log_dir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.features = log_dir / "edge-features.json"
        self.features.write_text(json.dumps(edge_features()))
        self.log = log_dir / "edge.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> Edge:
        args = [str(edge_binary()), "--port", str(self.port), "--interface", "127.0.0.1",
                "offline", "--bootstrap-file", str(self.features),
                "--frontend-tokens", EDGE_TOKEN, "--client-tokens", EDGE_TOKEN]
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"unleash-edge exited {self.proc.returncode}: see {self.log}")
            try:
                r = httpx.get(f"{self.url}/api/frontend/features/{KEY}", params={"userId": USER},
                              headers={"Authorization": EDGE_TOKEN}, timeout=1)
                if r.status_code in (200, 404):
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"unleash-edge not answering after {timeout}s: see {self.log}")

    def targets(self) -> dict[str, Target]:
        headers = {"Authorization": EDGE_TOKEN}
        return {
            "single": Target(f"{self.url}/api/frontend/features/{KEY}?userId={USER}", "GET", headers),
            "bulk": Target(f"{self.url}/api/frontend?userId={USER}", "GET", headers),
            "users": Target(f"{self.url}/api/frontend/features/{KEY}?userId={USER}", "GET", headers,
                            users=f"/api/frontend/features/{KEY}?userId={{user}}"),
        }

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


# --- the run ------------------------------------------------------------------------------------------------------


def measure(
    servers: dict[str, dict[str, Target]], scenarios: list[str], *, seconds: int, rounds: int, apart: bool
) -> dict[str, dict[str, float]]:
    """{"server | scenario | -cN": mean figures}, servers alternating within each round."""
    for targets in servers.values():  # warm caches and connections (every user's document, for "users")
        for name, target in targets.items():
            if name in scenarios:
                wrk(target, connections=16, seconds=25 if target.users else 1, apart=apart)
    runs: dict[str, list[dict[str, float]]] = {}
    for scenario in scenarios:
        for connections in (16, 64):
            for i in range(rounds):
                order = [s for s in servers if scenario in servers[s]]
                order = order if i % 2 == 0 else list(reversed(order))
                for server in order:
                    figures = wrk(servers[server][scenario], connections=connections, seconds=seconds, apart=apart)
                    runs.setdefault(f"{server} | {scenario} | -c{connections}", []).append(figures)
                    print(f"  round {i + 1} {server:<28} {scenario:<6} -c{connections:<3} {figures['rps']:>9,.0f} req/s"
                          f"   p50 {figures['p50']:.2f} ms   p99 {figures['p99']:.2f} ms", file=sys.stderr)
    return {name: {m: statistics.fmean(r[m] for r in rs) for m in rs[0]} for name, rs in runs.items()}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--peers", action="store_true", help="run Unleash Edge beside it")
    parser.add_argument("--no-fastapi", action="store_true", help="leave out the FastAPI build (quicker comparisons)")
    parser.add_argument("--metrics-off", action="store_true",
                        help="also run the hot path with its metrics off (what they cost)")
    parser.add_argument("--shared-cpus", action="store_true", help="wrk and the servers on any CPU, not apart")
    parser.add_argument("--scenarios", nargs="+", default=["single", "bulk", "users", "native"],
                        choices=["single", "bulk", "users", "native"],
                        help="users: single, a different user each request; native: GET /v1/orgs/{org}/flags/{key}")
    args = parser.parse_args()
    settings = await isolated_settings("ofrep")  # the local servers (Postgres, Kafka, Redis) are started first
    if not args.shared_cpus:
        print(f"wrk on CPU {WRK_CPU}, the servers on CPUs {sorted(place_servers())}", file=sys.stderr)
    logs = Path(tempfile.mkdtemp())
    stack = start_stack(settings, logs)
    routed: ServiceProcess | None = None
    unmeasured: ServiceProcess | None = None
    edge: Edge | None = None
    try:
        key = await seed(stack.command_url, admin_headers(settings))
        answer = await wait_for_seed(stack.query_url, key)
        print(f"flagstream answers {answer}", file=sys.stderr)
        servers = {"flagstream (hot path)": flagstream_targets(stack.query_url, key)}
        if not args.no_fastapi:
            port = free_port()
            routed = ServiceProcess("query", settings.model_copy(update={"query_port": port}),
                                    logs, f"http://127.0.0.1:{port}/healthz", module="bench.query_asgi")
            routed.log_path = logs / "query-routed.log"
            routed.start()
            servers["flagstream (FastAPI, ASGI)"] = flagstream_targets(f"http://127.0.0.1:{port}", key)
        if args.metrics_off:
            port = free_port()
            unmeasured = ServiceProcess("query", settings.model_copy(update={"query_port": port}), logs,
                                        f"http://127.0.0.1:{port}/healthz", module="bench.query_without_metrics")
            unmeasured.log_path = logs / "query-unmeasured.log"
            unmeasured.start()
            await wait_for_seed(f"http://127.0.0.1:{port}", key)
            servers["flagstream (metrics off)"] = flagstream_targets(f"http://127.0.0.1:{port}", key)
        if args.peers:
            edge = Edge(logs).start()
            peer = httpx.get(edge.targets()["single"].url, headers={"Authorization": EDGE_TOKEN}).json()
            print(f"unleash-edge answers {peer}", file=sys.stderr)
            assert peer["enabled"] is answer["value"], "Edge and flagstream disagree on the measured flag"
            servers["Unleash Edge (frontend API)"] = edge.targets()
        results = measure(servers, args.scenarios, seconds=args.seconds, rounds=args.rounds, apart=not args.shared_cpus)
    finally:
        if edge is not None:
            edge.stop()
        if routed is not None:
            routed.stop()
        if unmeasured is not None:
            unmeasured.stop()
        stack.stop()
        await drop_database(settings)
    print(f"\n{'server':<30} {'scenario':<8} {'conns':>5} {'req/s':>10} {'p50 ms':>8} {'p99 ms':>8}")
    for name, r in results.items():
        server, scenario, conns = name.split(" | ")
        print(f"{server:<30} {scenario:<8} {conns:>5} {r['rps']:>10,.0f} {r['p50']:>8.2f} {r['p99']:>8.2f}")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "ofrep.json").write_text(json.dumps(results, indent=1))
    load = os.getloadavg()[0]
    print(f"load average at the end: {load:.1f} on {os.cpu_count()} cores")
    where = "wrk and servers on any CPU" if args.shared_cpus else f"wrk on CPU {WRK_CPU}, servers on the others"
    title = (f"OFREP over HTTP, wrk -t1, mean of {args.rounds} rounds of {args.seconds} s\n"
             f"({os.cpu_count()} cores, {where}, load average {load:.0f})")
    grouped_bar_plot(results, RESULTS / "ofrep.png", title=title)
    print(f"\nwrote {RESULTS / 'ofrep.json'} and {RESULTS / 'ofrep.png'}")


if __name__ == "__main__":
    asyncio.run(main())
