"""Run the real services as subprocesses, configured for the test database and topic."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
from pydantic import SecretStr

from services.infra.settings import Settings

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment that makes `Settings()` in a subprocess equal `settings`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLAGS_")}
    for name, value in settings.model_dump().items():
        if value is None:
            continue  # unset: the field's default (None), not the string "None"
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        if isinstance(value, list | dict):
            value = json.dumps(value)  # complex fields are JSON in the environment
        env[f"FLAGS_{name.upper()}"] = str(value)
    return env


class ServiceProcess:
    """One service (`python -m services.<name>`, or `module`: a bench's own build of it) with its log in a file."""

    def __init__(
        self, name: str, settings: Settings, log_dir: Path, health_url: str | None = None, *, module: str | None = None
    ) -> None:
        self.name = name
        self.module = module if module is not None else f"services.{name}"
        self.settings = settings
        self.health_url = health_url
        self.log_path = log_dir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> ServiceProcess:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", self.module],
            cwd=REPO,
            env=settings_env(self.settings),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        if self.health_url:
            self._wait_healthy(timeout)
        return self

    def _wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited {self.proc.returncode}:\n{self.tail()}")
            try:
                if httpx.get(self.health_url, timeout=1).status_code == 200:  # type: ignore[arg-type]
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} not healthy after {timeout}s:\n{self.tail()}")

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def kill(self) -> None:
        """SIGKILL: no clean shutdown, as in a crash."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()
