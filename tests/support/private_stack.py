"""A stack of servers of a test's own (scripts/stack on free ports, its own directory), to break on purpose.

The shared servers must never be stopped or paused: other tests use them. A test that takes a broker
down (SIGSTOP, SIGKILL) starts this one instead, and stops it at the end.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.support.processes import REPO, free_port


@dataclass(frozen=True)
class PrivateStack:
    directory: Path
    env: dict[str, str]  # FLAGS_* ports and URLs, as `scripts/stack env` prints them

    @property
    def kafka_bootstrap(self) -> str:
        return self.env["FLAGS_KAFKA_BOOTSTRAP"]

    @property
    def kafka_pid(self) -> int:
        return int((self.directory / "run" / "kafka.pid").read_text().split()[0])

    def pause_kafka(self) -> None:
        os.kill(self.kafka_pid, signal.SIGSTOP)

    def resume_kafka(self) -> None:
        os.kill(self.kafka_pid, signal.SIGCONT)


def _script(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(["bash", str(REPO / "scripts" / "stack"), *args], env={**os.environ, **env},
                          capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"scripts/stack {' '.join(args)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done.stdout


@contextmanager
def private_stack() -> Iterator[PrivateStack]:
    """Started in a directory of its own under the system's temporary one, removed at the end."""
    directory = Path(tempfile.mkdtemp(prefix="flagstream-private-stack-"))
    directory.chmod(0o755)  # the postgres OS user runs its server in there
    names = ("FLAGS_PG_PORT", "FLAGS_REDIS_PORT", "FLAGS_KAFKA_PORT", "FLAGS_KAFKA_CONTROLLER_PORT",
             "FLAGS_KAFKA_SASL_PORT")
    ports = {name: str(free_port()) for name in names}
    env = {"FLAGS_STACK_DIR": str(directory), **ports}
    try:
        _script(env, "start")
        printed = _script(env, "env")
        urls = dict(line.removeprefix("export ").split("=", 1) for line in printed.splitlines() if "=" in line)
        yield PrivateStack(directory, {**env, **urls})
    finally:
        try:
            pid = int((directory / "run" / "kafka.pid").read_text().split()[0])
            os.kill(pid, signal.SIGCONT)  # a paused broker cannot stop
        except (OSError, ValueError):
            pass
        _script(env, "stop")
        shutil.rmtree(directory, ignore_errors=True)
