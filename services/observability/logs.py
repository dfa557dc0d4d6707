"""Logging for every service, set up in one place: text lines by default, JSON lines by `FLAGS_LOG_FORMAT=json`.

A JSON line is one object: `time` (UTC, ISO 8601), `level`, `logger`, `message`,
then the ids known where the line was written (`request_id`, `event_id`,
`trace_id`, `span_id`: `services.observability.tracing` binds the last two while a span is
current) and `exc` for a traceback. The ids come from `log_ids`, a context
manager over context variables, so code handling a request or an event binds
them once and every line it (and what it awaits) writes carries them; a
record's own `extra={"event_id": ...}` wins over the context.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from enum import StrEnum

__all__ = ["IDS", "JsonFormatter", "LogFormat", "configure_logging", "log_ids"]

IDS = ("request_id", "event_id", "trace_id", "span_id")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

_ids: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar("flagstream_log_ids", default=None)


class LogFormat(StrEnum):
    TEXT = "text"
    JSON = "json"


@contextmanager
def log_ids(**ids: str | None) -> Iterator[None]:
    """Bind ids (None ones are skipped) to every log line written inside the block, in this task."""
    bound = {**(_ids.get() or {}), **{name: value for name, value in ids.items() if value is not None}}
    token = _ids.set(bound)
    try:
        yield
    finally:
        _ids.reset(token)


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (a message's newlines are escaped by JSON itself)."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        bound = _ids.get() or {}
        for name in IDS:
            value = getattr(record, name, None) or bound.get(name)
            if value is not None:
                line[name] = str(value)
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        elif record.stack_info:
            line["exc"] = self.formatStack(record.stack_info)
        return json.dumps(line, ensure_ascii=False, default=str)


class _QuietReconnects(logging.Filter):
    """aiokafka logs every failed reconnect at ERROR; the services already report outages once."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(("Unable connect to", "Unable to bootstrap"))


def configure_logging(log_format: LogFormat | str = LogFormat.TEXT, *, level: int = logging.INFO) -> None:
    """Send every logger's lines to stdout in `log_format`, replacing any handler set before (idempotent)."""
    handler = logging.StreamHandler(sys.stdout)
    if LogFormat(log_format) is LogFormat.JSON:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    aiokafka = logging.getLogger("aiokafka")
    aiokafka.setLevel(logging.WARNING)
    if not any(isinstance(f, _QuietReconnects) for f in aiokafka.filters):
        aiokafka.addFilter(_QuietReconnects())
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per outgoing call is noise, not a log
