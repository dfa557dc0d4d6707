"""JSON log lines: one object per record, the ids bound where the line was written."""

from __future__ import annotations

import io
import json
import logging
import sys

import httpx
import pytest
from fastapi import FastAPI

from services.observability import Metrics, logs
from services.observability.asgi import MAX_REQUEST_ID, install, request_id
from services.observability.logs import JsonFormatter, configure_logging, log_ids


def _record(message: str, *args: object, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("flagstream.test", logging.WARNING, __file__, 1, message, args, None)
    record.__dict__.update(extra)
    return record


def test_a_record_renders_as_one_json_object_on_one_line() -> None:
    line = JsonFormatter().format(_record("two\nlines for %s", "acme"))
    assert "\n" not in line
    body = json.loads(line)
    assert body["level"] == "WARNING"
    assert body["logger"] == "flagstream.test"
    assert body["message"] == "two\nlines for acme"
    assert body["time"].endswith("+00:00")
    assert not set(body) & set(logs.IDS)  # no id known, none invented


def test_ids_bound_by_the_context_appear_and_a_records_own_win() -> None:
    with log_ids(request_id="r-1", event_id="e-1", trace_id=None):
        bound = json.loads(JsonFormatter().format(_record("applied")))
        own = json.loads(JsonFormatter().format(_record("applied", event_id="e-2")))
    after = json.loads(JsonFormatter().format(_record("after")))
    assert (bound["request_id"], bound["event_id"]) == ("r-1", "e-1")
    assert "trace_id" not in bound
    assert own["event_id"] == "e-2"
    assert "event_id" not in after


def test_a_traceback_stays_inside_the_line() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), exc_info=sys.exc_info())
    body = json.loads(JsonFormatter().format(record))
    assert "ValueError: boom" in body["exc"]


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_configure_logging_sends_every_logger_to_stdout_in_the_format(
    fmt: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = io.StringIO()
    monkeypatch.setattr("sys.stdout", out)
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        configure_logging(fmt)
        configure_logging(fmt)  # idempotent: one handler, one line per record
        logging.getLogger("services.projector").info("batch applied")
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
    lines = out.getvalue().splitlines()
    assert len(lines) == 1
    if fmt == "json":
        assert json.loads(lines[0])["message"] == "batch applied"
    else:
        assert lines[0].endswith("INFO services.projector: batch applied")


def test_an_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError):
        configure_logging("yaml")


@pytest.mark.parametrize(
    ("sent", "kept"),
    [(b"abc-123", True), (b"", False), (b"x" * 129, False), ("é".encode(), False), (b"a\x07b", False)],
)
def test_a_request_id_is_the_callers_when_sane_else_a_new_one(sent: bytes, kept: bool) -> None:
    chosen = request_id({"headers": [(b"x-request-id", sent)]})
    assert (chosen == sent.decode(errors="replace")) is kept
    assert len(chosen) <= MAX_REQUEST_ID


async def test_every_line_written_while_answering_a_request_carries_its_id() -> None:
    app = FastAPI()
    seen: list[str] = []

    @app.get("/ping")
    def ping() -> dict[str, str]:
        seen.append(JsonFormatter().format(_record("answering")))
        return {"ok": "yes"}

    install(app, Metrics())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://svc") as client:
        await client.get("/ping", headers={"X-Request-Id": "req-42"})
    assert json.loads(seen[0])["request_id"] == "req-42"
