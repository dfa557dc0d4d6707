"""What a time-travel question can get wrong; each names the request field at fault."""

from __future__ import annotations

from services.command.errors import CommandError


class TimeTravelError(CommandError):
    """Base of time travel's errors: `status`, a stable `code` and the `field` at fault (`api` answers them)."""

    status = 422
    code = "invalid_request"

    def __init__(self, detail: str, field: str) -> None:
        super().__init__(detail)
        self.detail = detail
        self.field = field


class UnknownOrg(TimeTravelError):
    status = 404
    code = "unknown_org"


class UnknownFlag(TimeTravelError):
    status = 404
    code = "unknown_flag"


class BadInstant(TimeTravelError):
    """An instant in the future, or a range that runs backwards."""


class OrgRequired(TimeTravelError):
    """A system-wide key must name the org it asks about."""

    def __init__(self) -> None:
        super().__init__("org is required with a system-wide key", "org")
