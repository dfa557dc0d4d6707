"""Events about the log itself: a record on the topic that is not an event, acknowledged as known.

`flagctl audit verify` fails a log holding a record this product never wrote (`foreign`: a stray
message, wrong-schema JSON, an oversized blob). Once someone has looked at it, a system admin
acknowledges it, by its place on the topic and the SHA-256 of its value, with a reason; the
acknowledgement is an event like any other (sealed, chained, audited), so the verifier, reading
it from the same log, reports that record as a warning naming who acknowledged it and why. The
hash makes it one record, never "whatever is at that offset": a different record there stays a
failure. Each record has a stream of its own, so acknowledging one twice is a version conflict.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from events.base import Change

__all__ = ["ForeignRecordAcknowledged", "foreign_record_stream"]

SHA256_PATTERN = r"^[0-9a-f]{64}$"


def foreign_record_stream(partition: int, offset: int) -> str:
    return f"log/foreign/{partition}/{offset}"


class ForeignRecordAcknowledged(Change):
    type: Literal["ForeignRecordAcknowledged"] = "ForeignRecordAcknowledged"
    partition: int = Field(ge=0, le=100_000, description="The record's partition of the flag-change topic.")
    offset: int = Field(ge=0, description="The record's offset in that partition.")
    sha256: str = Field(pattern=SHA256_PATTERN, description="SHA-256 of the record's value, lowercase hex.")

    @property
    def stream(self) -> str:
        return foreign_record_stream(self.partition, self.offset)

    @property
    def tenant(self) -> str | None:
        return None
