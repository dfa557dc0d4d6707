"""Notifications: from the command API's 2xx to the signed webhook arriving, alone and beside a dead destination.

    .venv/bin/python -m bench.notifications [--changes 500] [--pause 0.2]

Target (issue 15): p99 < 500 ms, and a destination that is down does not hold back the others.
The command service and the notifier run as processes on a database and topic of their own; the
receiver (which checks every signature with the `standardwebhooks` verifier) runs in this process
on 127.0.0.1, named by FLAGS_NOTIFIER_ALLOW_HOSTS. Each change flips an org override; the clock
starts when the PUT returns and stops when the webhook whose `webhook-id` is that change's event
id arrives. Two rounds of `--changes` each: first the receiver's subscription alone (a second one,
to a destination that accepts connections and never answers, paused), then with that second one
resumed, so every change also queues a delivery that times out and is retried.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import random
import secrets
import tempfile
import time
from pathlib import Path

import httpx

from bench.harness import Progress, drop_database, isolated_settings, percentiles
from bench.plots import latency_plot
from services.infra.sealing import new_key
from services.infra.settings import Settings
from tests.support.auth import admin_headers
from tests.support.processes import ServiceProcess, free_port
from tests.support.receivers import Receiver, verifying

KEY = "ai.insights.enabled"
RESULTS = Path(__file__).parent / "results"
TARGET_P99_MS = 500.0


class BlackHole:
    """A destination that is down in the worst way: it takes the connection and never answers."""

    def __init__(self) -> None:
        self.connections = 0
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}/hook"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._hold, "127.0.0.1", 0)

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()

    async def _hold(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await reader.read()  # until the notifier gives up and closes
        finally:
            writer.close()


async def subscribe(http: httpx.AsyncClient, command_url: str, name: str, url: str, secret: str) -> str:
    made = await http.post(f"{command_url}/v1/orgs/bench/subscriptions", json={
        "name": name, "reason": "bench", "flag_pattern": KEY,
        "destination": {"kind": "webhook", "url": url, "secret": secret},
    })  # fmt: skip
    made.raise_for_status()
    return str(made.json()["id"])


async def until_ready(notifier_url: str) -> None:
    async with httpx.AsyncClient(timeout=2) as http:
        for _ in range(300):
            try:
                if (await http.get(f"{notifier_url}/readyz")).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.1)
    raise SystemExit("the notifier did not become ready in 30 s")


async def measure(http: httpx.AsyncClient, command_url: str, receiver: Receiver, changes: int, pause: float,
                  label: str, first: int) -> list[float]:  # fmt: skip
    """Latency (ms) of each of `changes` org-override flips, command 2xx → webhook received."""
    sent: dict[str, float] = {}
    progress = Progress(label, changes)
    rng = random.Random(first)
    for i in range(first, first + changes):
        await asyncio.sleep(rng.uniform(0, pause))
        body = {"enabled": i % 2 == 0, "reason": "bench"}
        put = await http.put(f"{command_url}/v1/orgs/bench/flags/{KEY}", json=body)
        put.raise_for_status()
        sent[put.json()["events"][0]["event_id"]] = time.monotonic()
        progress.update(i - first + 1)
    progress.finish()
    deadline = time.monotonic() + 30
    arrived: dict[str, float] = {}
    while time.monotonic() < deadline:
        arrived = {r.headers["webhook-id"]: r.at for r in receiver.received if r.headers.get("webhook-id") in sent}
        if len(arrived) == len(sent):
            break
        await asyncio.sleep(0.05)
    missing = len(sent) - len(arrived)
    if missing:
        raise SystemExit(f"{label}: {missing} of {len(sent)} changes never reached the receiver")
    refused = [status for status in receiver.answered if status != 204]
    if refused:
        raise SystemExit(f"{label}: the receiver refused {len(refused)} deliveries (signature): {refused[:5]}")
    return [(arrived[event_id] - at) * 1000 for event_id, at in sent.items()]


async def run(settings: Settings, changes: int, pause: float) -> dict[str, list[float]]:
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    logs = Path(tempfile.mkdtemp())
    command = ServiceProcess("command", settings, logs, f"http://127.0.0.1:{settings.command_port}/healthz")
    notifier_url = f"http://127.0.0.1:{settings.notifier_port}"
    notifier = ServiceProcess("notifier", settings, logs, f"{notifier_url}/healthz")
    command_url = f"http://127.0.0.1:{settings.command_port}"
    hole = BlackHole()
    await hole.start()
    try:
        async with Receiver(verifying(secret)) as receiver, httpx.AsyncClient(
            timeout=10, headers=admin_headers(settings)
        ) as http:
            command.start()
            defined = await http.post(f"{command_url}/v1/flags", json={"key": KEY, "group": "ai", "reason": "bench"})
            defined.raise_for_status()
            await subscribe(http, command_url, "receiver", receiver.url, secret)
            down = await subscribe(http, command_url, "down", hole.url, secret)
            one = f"{command_url}/v1/orgs/bench/subscriptions/{down}"
            (await http.post(f"{one}/pause", json={"reason": "bench: first round alone"})).raise_for_status()
            notifier.start()
            await until_ready(notifier_url)
            alone = await measure(http, command_url, receiver, changes, pause, "alone", 0)
            (await http.post(f"{one}/resume", json={"reason": "bench: second round"})).raise_for_status()
            beside = await measure(http, command_url, receiver, changes, pause, "beside down", changes)
            print(f"the dead destination was connected to {hole.connections} times (each attempt times out)")
            return {"alone": alone, "beside a dead destination": beside}
    finally:
        notifier.stop()
        command.stop()
        await hole.stop()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--changes", type=int, default=500, help="changes per round (two rounds)")
    parser.add_argument("--pause", type=float, default=0.2, help="longest random pause between changes, seconds")
    args = parser.parse_args()
    settings = await isolated_settings(
        "notifications",
        notifier_port=free_port(),
        notifier_group=f"bench-notifier-{secrets.token_hex(4)}",
        notifier_allow_hosts=["127.0.0.1"],
        subscription_key=new_key(),
    )
    try:
        rounds = await run(settings, args.changes, args.pause)
    finally:
        await drop_database(settings)
    RESULTS.mkdir(exist_ok=True)
    out: dict[str, object] = {}
    for label, samples in rounds.items():
        stats = percentiles(samples)
        out[label] = {"samples_ms": samples, "stats": stats}
        verdict = "meets" if stats["p99"] < TARGET_P99_MS else "MISSES"
        print(f"notifications, {label}, {stats['n']} changes 0-{args.pause:g} s apart: p50 {stats['p50']:.1f} ms, "
              f"p90 {stats['p90']:.1f} ms, p99 {stats['p99']:.1f} ms, max {stats['max']:.1f} ms "
              f"({verdict} p99 < {TARGET_P99_MS:.0f} ms)")  # fmt: skip
    (RESULTS / "notifications.json").write_text(json.dumps(out, indent=1))
    latency_plot(
        {f"command 2xx → webhook, {label}": samples for label, samples in rounds.items()},
        RESULTS / "notifications.png",
        title=f"Notifications, {args.changes} changes per round (loopback, 2 cores)",
    )
    print(f"wrote {RESULTS / 'notifications.png'}")


if __name__ == "__main__":
    asyncio.run(main())
