"""What flagctl's commands raise: kept apart from the HTTP client so the parser needs no httpx."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """The service refused or could not be reached; `str()` is what to print."""

    def __init__(self, message: str, status: int | None = None, body: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = body or {}


class UsageError(Exception):
    """The arguments parse but do not make sense together."""
