"""Where a setting lives, and the name of the stream that records it.

A stream is one flag at one scope (or the flag's definition). Each has its own
version sequence and hash chain; the Kafka key is the organisation, so all of a
tenant's streams stay in order on one partition.
"""

from __future__ import annotations

from dataclasses import dataclass

from events.vocabulary import Level, Platform

SYSTEM_PARTITION_KEY = "_system"
# The longest stream name, `org/<org id: 64>/user/<user id: 128>/flag/<flag key: 255>`, is 463 characters.
MAX_STREAM_LENGTH = 512


@dataclass(frozen=True, slots=True)
class Scope:
    """A level plus the identifiers that level needs (validated on construction)."""

    level: Level
    org_id: str | None = None
    platform: Platform | None = None
    user_id: str | None = None

    def __post_init__(self) -> None:
        wants_org = self.level is not Level.SYSTEM
        if wants_org != (self.org_id is not None):
            raise ValueError(f"{self.level} scope {'needs' if wants_org else 'takes no'} org_id")
        if (self.level is Level.PLATFORM) != (self.platform is not None):
            raise ValueError("platform is required at platform level and only there")
        if (self.level is Level.USER) != (self.user_id is not None):
            raise ValueError("user_id is required at user level and only there")

    @classmethod
    def system(cls) -> Scope:
        return cls(Level.SYSTEM)

    @classmethod
    def org(cls, org_id: str) -> Scope:
        return cls(Level.ORG, org_id)

    @classmethod
    def for_platform(cls, org_id: str, platform: Platform | str) -> Scope:
        return cls(Level.PLATFORM, org_id, platform=Platform(platform))

    @classmethod
    def user(cls, org_id: str, user_id: str) -> Scope:
        return cls(Level.USER, org_id, user_id=user_id)

    @property
    def partition_key(self) -> str:
        return self.org_id if self.org_id is not None else SYSTEM_PARTITION_KEY

    def stream(self, flag_key: str) -> str:
        match self.level:
            case Level.SYSTEM:
                return f"flag/{flag_key}/system"
            case Level.ORG:
                return f"org/{self.org_id}/flag/{flag_key}"
            case Level.PLATFORM:
                return f"org/{self.org_id}/platform/{self.platform}/flag/{flag_key}"
            case Level.USER:
                return f"org/{self.org_id}/user/{self.user_id}/flag/{flag_key}"
        raise AssertionError(self.level)  # pragma: no cover


def definition_stream(flag_key: str) -> str:
    """The stream of a flag's definition (defined, updated, archived)."""
    return f"flag/{flag_key}"
