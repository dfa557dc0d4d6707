"""Bytes ↔ envelopes: verify the seal, lift old schemas, validate."""

from __future__ import annotations

import json
from typing import Any

from pydantic import ValidationError

from events.envelope import Envelope, hash_of
from events.errors import DecodeError
from events.upcasting import UpcastError, upcast


def decode(raw: bytes | str) -> Envelope:
    """Parse one event; raise `DecodeError` for anything that is not a sound event."""
    try:
        fields = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise DecodeError(f"not JSON: {exc}") from exc
    return decode_fields(fields)


def decode_fields(fields: Any) -> Envelope:
    if not isinstance(fields, dict):
        raise DecodeError("event is not a JSON object")
    try:
        sealed = hash_of(fields)
    except UnicodeEncodeError as exc:  # e.g. a lone surrogate escape ("\ud800"): JSON allows it, UTF-8 does not
        raise DecodeError(f"not valid Unicode: {exc.reason}") from exc
    if fields.get("hash") != sealed:
        raise DecodeError("hash does not match the event's contents")
    data = fields.get("data")
    if not isinstance(data, dict):
        raise DecodeError("data is not a JSON object")
    try:
        lifted = upcast(str(fields.get("type")), int(fields.get("schema_version", 0)), data)
    except (UpcastError, TypeError, ValueError, KeyError) as exc:
        raise DecodeError(f"cannot upcast: {exc}") from exc
    if lifted.get("type") != fields.get("type"):
        raise DecodeError("envelope type and data type differ")
    try:
        return Envelope.model_validate({**fields, "data": lifted})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise DecodeError(f"invalid event at {where}: {first['msg']}") from exc
