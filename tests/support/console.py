"""The admin console in front of a fresh stack, with a flag, another org's override and keys of every role."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from services.infra.settings import Settings
from tests.support.processes import ServiceProcess, free_port
from tests.support.stack import Stack, start_stack

FLAG = "ai.insights.enabled"
REASON = "console test"


@dataclass
class ConsoleStack:
    stack: Stack
    console: ServiceProcess
    url: str
    org: str  # org A: the org whose keys the tests hold
    other: str  # org B
    keys: dict[str, str]  # role label -> API key

    @property
    def admin(self) -> httpx.Client:
        return httpx.Client(timeout=10, headers=self.stack.headers)

    def events(self, org: str | None = None) -> list[dict]:
        with self.admin as http:
            params = {"org": org, "limit": 1000} if org else {"limit": 1000}
            return http.get(f"{self.stack.command_url}/v1/events", params=params).json()["events"]

    def evaluate(self, org: str, platform: str | None = None) -> dict:
        with self.admin as http:
            params = {"platform": platform} if platform else {}
            response = http.get(f"{self.stack.query_url}/v1/orgs/{org}/flags/{FLAG}", params=params)
            return response.json() if response.status_code == 200 else {}


def start_console(make_settings: Callable[[], Settings], logs: Path) -> Iterator[ConsoleStack]:
    """A fresh stack plus the console, a flag (system default off), and keys of every role for org A."""
    settings = make_settings().model_copy(update={"console_port": free_port()})
    stack = start_stack(settings, logs)
    url = f"http://127.0.0.1:{settings.console_port}"
    console = ServiceProcess("console", settings, logs, f"{url}/healthz")
    try:
        console.start()
        run = uuid.uuid4().hex[:8]
        org, other = f"acme-{run}", f"globex-{run}"
        with httpx.Client(timeout=10, headers=stack.headers) as http:
            command = stack.command_url
            for body in ({"key": FLAG, "group": "ai", "kind": "release", "description": "AI insights",
                          "owner": "insights-team", "reason": REASON},
                         {"key": "ops.kill.sync", "group": "ops", "kind": "ops", "reason": REASON},
                         {"key": "exp.checkout.enabled", "group": "exp", "kind": "experiment", "reason": REASON}):
                assert http.post(f"{command}/v1/flags", json=body).status_code == 201
            assert http.put(f"{command}/v1/flags/{FLAG}/system", json={"enabled": False, "reason": REASON}
                            ).status_code == 201
            assert http.put(f"{command}/v1/orgs/{other}/flags/{FLAG}", json={"enabled": True, "reason": REASON}
                            ).status_code == 201
            keys = {"admin": stack.headers["Authorization"].removeprefix("Bearer ")}
            for label, role, scope in (("org-admin", "org-admin", org), ("auditor", "auditor", org),
                                       ("evaluator", "evaluator", org)):
                body = {"name": f"{label} of A", "role": role, "org_id": scope, "reason": REASON}
                keys[label] = http.post(f"{command}/v1/keys", json=body).json()["key"]
        yield ConsoleStack(stack, console, url, org, other, keys)
    finally:
        console.stop()
        stack.stop()
