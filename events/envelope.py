"""The envelope every change travels in, and the hash chain that seals it.

`hash` is the SHA-256 of the envelope's canonical JSON without `hash` itself;
`prev_hash` is the hash of the previous event of the same stream (the genesis
hash for version 1). Altering, removing or reordering an event therefore breaks
the chain of its stream from that point on.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator

from events.changes import AnyChange
from events.fields import FlagKey, Reason
from events.scope import MAX_STREAM_LENGTH

GENESIS_HASH = "0" * 64
HASH_PATTERN = r"^[0-9a-f]{64}$"


class Actor(BaseModel):
    """Who made a change: a stable id and a display name."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    id: str = Field(min_length=1, max_length=200)
    name: str = Field(min_length=1, max_length=200)


class Envelope(BaseModel):
    """One event as the log records it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    event_id: UUID
    type: str
    schema_version: int = Field(ge=1, description="Schema version the data was written in.")
    stream: str = Field(min_length=1, max_length=MAX_STREAM_LENGTH)
    version: int = Field(ge=1, description="Position in the stream, from 1, without gaps.")
    sequence: int = Field(ge=1, description="Global order assigned by the command store.")
    occurred_at: AwareDatetime
    org_id: str | None
    flag_key: FlagKey | None = Field(description="The flag changed; None for API key events.")
    actor: Actor
    reason: Reason
    previous: dict[str, Any] | None = Field(description="Value of the stream before the change.")
    new: dict[str, Any] | None = Field(description="Value of the stream after the change.")
    data: AnyChange
    prev_hash: str = Field(pattern=HASH_PATTERN)
    hash: str = Field(pattern=HASH_PATTERN)

    @field_validator("occurred_at")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        return value.astimezone(UTC)

    @model_validator(mode="after")
    def _agrees_with_data(self) -> Envelope:
        expected = {
            "type": self.data.type,
            "stream": self.data.stream,
            "flag_key": getattr(self.data, "flag_key", None),
            "org_id": self.data.tenant,
        }
        for name, value in expected.items():
            if getattr(self, name) != value:
                raise ValueError(f"{name} {getattr(self, name)!r} disagrees with data ({value!r})")
        return self

    @property
    def partition_key(self) -> str:
        return self.data.partition_key

    def to_json(self) -> bytes:
        """The canonical bytes that are stored, published and hashed."""
        return canonical_json(self.model_dump(mode="json"))


def canonical_json(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def hash_of(fields: dict[str, Any]) -> str:
    """Hash of an envelope given as JSON-native fields (any `hash` key is ignored)."""
    body = {k: v for k, v in fields.items() if k != "hash"}
    return hashlib.sha256(canonical_json(body)).hexdigest()


def seal(
    *,
    event_id: UUID,
    sequence: int,
    version: int,
    occurred_at: datetime,
    actor: Actor,
    reason: str,
    previous: dict[str, Any] | None,
    new: dict[str, Any] | None,
    data: AnyChange,
    prev_hash: str,
) -> Envelope:
    """Build an envelope for `data` and compute its hash."""
    fields: dict[str, Any] = {
        "event_id": event_id,
        "type": data.type,
        "schema_version": data.SCHEMA_VERSION,
        "stream": data.stream,
        "version": version,
        "sequence": sequence,
        "occurred_at": occurred_at,
        "org_id": data.tenant,
        "flag_key": getattr(data, "flag_key", None),
        "actor": actor,
        "reason": reason,
        "previous": previous,
        "new": new,
        "data": data,
        "prev_hash": prev_hash,
        "hash": GENESIS_HASH,
    }
    draft = Envelope.model_validate(fields)
    return draft.model_copy(update={"hash": hash_of(draft.model_dump(mode="json"))})
