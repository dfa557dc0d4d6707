"""The three services (command, projector, query) running as processes against one test deployment's settings."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from services.infra.settings import Settings
from tests.support.auth import admin_headers
from tests.support.processes import ServiceProcess


@dataclass
class Stack:
    settings: Settings
    command: ServiceProcess
    projector: ServiceProcess
    query: ServiceProcess

    @property
    def command_url(self) -> str:
        return f"http://127.0.0.1:{self.settings.command_port}"

    @property
    def query_url(self) -> str:
        return f"http://127.0.0.1:{self.settings.query_port}"

    @property
    def projector_url(self) -> str:
        return f"http://127.0.0.1:{self.settings.projector_port}"

    @property
    def headers(self) -> dict[str, str]:
        """Authorization as the database's system admin."""
        return admin_headers(self.settings)

    def stop(self) -> None:
        for service in (self.command, self.projector, self.query):
            service.stop()


def start_stack(settings: Settings, log_dir: Path) -> Stack:
    base = "http://127.0.0.1"
    stack = Stack(
        settings,
        ServiceProcess("command", settings, log_dir, f"{base}:{settings.command_port}/healthz"),
        ServiceProcess("projector", settings, log_dir, f"{base}:{settings.projector_port}/healthz"),
        ServiceProcess("query", settings, log_dir, f"{base}:{settings.query_port}/healthz"),
    )
    stack.command.start()
    stack.projector.start()
    stack.query.start()
    return stack
