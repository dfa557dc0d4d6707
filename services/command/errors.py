"""The command side's exception tree, named in our words.

`CommandError` is the base of everything this package raises on purpose. The
store translates asyncpg's exceptions into these at the edge, and the HTTP
layer maps each one to exactly one status code, so no third-party exception
reaches a caller.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class CommandError(Exception):
    """Base of every error raised by `services.command`."""


class VersionConflict(CommandError):
    """The stream is not at the version the writer expected (optimistic concurrency)."""

    def __init__(self, stream: str, current_version: int, expected_version: int | None) -> None:
        super().__init__(f"stream {stream!r} is at version {current_version}, expected {expected_version}")
        self.stream = stream
        self.current_version = current_version
        self.expected_version = expected_version


class UnknownFlag(CommandError):
    """The flag is not defined, or is archived and takes no new settings."""

    def __init__(self, flag_key: str, *, archived: bool = False) -> None:
        state = "is archived" if archived else "is not defined"
        super().__init__(f"flag {flag_key!r} {state}")
        self.flag_key = flag_key
        self.archived = archived


class UnknownKey(CommandError):
    """No such API key within the caller's reach (the same answer whether it exists elsewhere)."""

    def __init__(self, key_id: str) -> None:
        super().__init__(f"no API key {key_id!r}")
        self.key_id = key_id


class UnknownSubscription(CommandError):
    """No such subscription within the caller's reach (the same answer whether it exists elsewhere)."""

    def __init__(self, subscription_id: str) -> None:
        super().__init__(f"no subscription {subscription_id!r}")
        self.subscription_id = subscription_id


class UnknownSegment(CommandError):
    """No such segment within the caller's reach (the same answer whether it exists elsewhere)."""

    def __init__(self, segment_key: str) -> None:
        super().__init__(f"no segment {segment_key!r}")
        self.segment_key = segment_key


class SegmentInUse(CommandError):
    """A segment that flags' rules name cannot be archived: `uses` says which (`segments.SegmentUse`)."""

    def __init__(self, segment_key: str, uses: Sequence[Any]) -> None:
        named = "; ".join(str(u) for u in uses)
        super().__init__(f"segment {segment_key!r} is named by the rules of {named}: change those rules first")
        self.segment_key = segment_key
        self.uses = list(uses)


class InvalidCommand(CommandError):
    """A well-formed request that asks for something the model does not allow."""

    def __init__(self, detail: str, *, field: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.field = field


class OutsideTenancy(CommandError):
    """Row-level security refused a row of another tenancy than the transaction's: a bug upstream (a route
    that let a caller name another org), stopped by Postgres. Not mapped: a logged, generic 500."""


class StoreUnavailable(CommandError):
    """Postgres cannot be reached; the request may be retried."""


class SubscriptionsUnavailable(CommandError):
    """No key to seal subscription secrets with (FLAGS_SUBSCRIPTION_KEY): none can be created here."""


class KafkaUnavailable(CommandError):
    """The broker cannot be reached; the relay keeps the rows and retries."""
