"""Server-sent events on the wire (WHATWG HTML, "Server-sent events"): the frames OFREP's change stream sends.

Pure: bytes in, bytes out. An event is `id:` and `data:` lines and a blank line; a
comment (a line opening with `:`) is ignored by every client, which is what keeps an
idle connection open through proxies; `retry:` tells a client how long to wait before
it reconnects. `Last-Event-ID` is the header a reconnecting client sends with the
last `id:` it saw.
"""

from __future__ import annotations

import orjson

__all__ = ["MAX_EVENT_ID", "comment", "event", "last_event_id", "retry"]

MAX_EVENT_ID = 2**63 - 1  # our ids are positions: a bigint is plenty, and bounds what is parsed


def event(data: object, *, event_id: int | None = None) -> bytes:
    """One event: `id:` (when given) and its data as one line of compact JSON, then the blank line.

    The `event:` field is left out: OFREP's events are all of the default type, `message`.
    """
    body = orjson.dumps(data)  # compact JSON holds no newline, so one `data:` line carries it
    if event_id is None:
        return b"data: " + body + b"\n\n"
    return b"id: " + str(event_id).encode() + b"\ndata: " + body + b"\n\n"


def comment(text: str = "") -> bytes:
    """A comment line: clients ignore it; proxies see bytes flow. Line breaks in `text` are dropped."""
    return b": " + text.replace("\r", " ").replace("\n", " ").encode() + b"\n\n"


def retry(milliseconds: int) -> bytes:
    """How long a client waits before reconnecting after the connection drops."""
    if milliseconds < 0:
        raise ValueError(f"retry must be >= 0 ms, not {milliseconds}")
    return b"retry: " + str(milliseconds).encode() + b"\n\n"


def last_event_id(header: str | None) -> int | None:
    """The position a reconnecting client last saw, from `Last-Event-ID`; None when absent or not one of ours.

    A value we never sent (not a decimal position) is treated as absent: the client is then told to refetch,
    which is always safe.
    """
    if header is None:
        return None
    text = header.strip()
    if not text.isascii() or not text.isdigit() or len(text) > 19:
        return None
    value = int(text)
    return value if value <= MAX_EVENT_ID else None
