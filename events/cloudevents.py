"""Events on Kafka as CloudEvents 1.0 in binary content mode.

The record value is the envelope's canonical JSON (so the bytes that were
hashed are the bytes that travel); the `ce_*` headers let any CloudEvents
consumer route and filter without parsing the body. The record key is the
organisation, or `_system` for system-level changes. A traced change also carries
its W3C trace context twice, additively (the value never changes): `traceparent`, the
header OpenTelemetry's Kafka instrumentations read, and `ce_traceparent`, the
CloudEvents distributed-tracing extension attribute in binary mode.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from events.codec import decode
from events.envelope import Envelope
from events.errors import DecodeError

SPEC_VERSION = "1.0"
SOURCE = "/flagstream/command"
TYPE_PREFIX = "io.flagstream."
CONTENT_TYPE = "application/json"
ID_HEADER = "ce_id"  # the event id: what a reader of raw records (the relay, checking the topic's end) looks up
TRACEPARENT_HEADER = "traceparent"  # W3C Trace Context, as on HTTP
CE_TRACEPARENT_HEADER = "ce_traceparent"  # the CloudEvents distributed-tracing extension


@dataclass(frozen=True, slots=True)
class Record:
    """What a producer sends: key, value and headers, all bytes."""

    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]]


def ce_type(envelope: Envelope) -> str:
    return f"{TYPE_PREFIX}{envelope.type}.v{envelope.schema_version}"


def attributes(envelope: Envelope) -> dict[str, str]:
    """The envelope's CloudEvents context attributes (spec names, without the `ce_` of Kafka headers)."""
    return {
        "specversion": SPEC_VERSION,
        "id": str(envelope.event_id),
        "source": SOURCE,
        "type": ce_type(envelope),
        "time": envelope.occurred_at.isoformat().replace("+00:00", "Z"),
        "subject": envelope.stream,
        "streamversion": str(envelope.version),
        "sequence": str(envelope.sequence),
        "partitionkey": envelope.partition_key,
    }


def to_record(envelope: Envelope, value: bytes | None = None, *, traceparent: str | None = None) -> Record:
    """Map an envelope to a Kafka record; `value` may pass the stored canonical bytes, `traceparent` the
    change's trace context (the caller has checked it is one)."""
    headers = {f"ce_{name}": text for name, text in attributes(envelope).items()}
    headers["content-type"] = CONTENT_TYPE
    if traceparent is not None:
        headers[CE_TRACEPARENT_HEADER] = headers[TRACEPARENT_HEADER] = traceparent
    return Record(
        key=envelope.partition_key.encode(),
        value=value if value is not None else envelope.to_json(),
        headers=[(name, text.encode()) for name, text in headers.items()],
    )


def from_record(value: bytes | None, headers: Iterable[tuple[str, bytes]]) -> Envelope:
    """Decode a consumed record; `DecodeError` says what is wrong with it."""
    if value is None:
        raise DecodeError("record has no value")
    ce = _ce_headers(headers)
    envelope = decode(value)
    _check_headers(ce, envelope)
    return envelope


def check_headers(envelope: Envelope, headers: Iterable[tuple[str, bytes]]) -> None:
    """Raise `DecodeError` unless the headers describe `envelope` (as `from_record` requires)."""
    _check_headers(_ce_headers(headers), envelope)


def _ce_headers(headers: Iterable[tuple[str, bytes]]) -> dict[str, str]:
    try:
        ce = {name.lower(): raw.decode() for name, raw in headers}
    except (UnicodeDecodeError, AttributeError) as exc:
        raise DecodeError("headers are not UTF-8") from exc
    if ce.get("ce_specversion") != SPEC_VERSION:
        raise DecodeError(f"ce_specversion is {ce.get('ce_specversion')!r}, expected '1.0'")
    if not ce.get(ID_HEADER):
        raise DecodeError("ce_id header is missing")
    return ce


def _check_headers(ce: dict[str, str], envelope: Envelope) -> None:
    if ce[ID_HEADER] != str(envelope.event_id):
        raise DecodeError("ce_id header differs from the event id")
    if ce.get("ce_type") != ce_type(envelope):
        raise DecodeError(f"ce_type {ce.get('ce_type')!r} differs from the event type")
