"""The base of every event body: what each change must say about where it belongs."""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, ConfigDict

from events.scope import SYSTEM_PARTITION_KEY

__all__ = ["Change"]


class Change(BaseModel):
    """Base of every event body: it names its stream, its tenant and its Kafka key."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    SCHEMA_VERSION: ClassVar[int] = 1

    @property
    def stream(self) -> str:
        raise NotImplementedError

    @property
    def tenant(self) -> str | None:
        """The organisation the change belongs to; None for system-wide changes."""
        raise NotImplementedError

    @property
    def partition_key(self) -> str:
        tenant = self.tenant
        return SYSTEM_PARTITION_KEY if tenant is None else tenant
