"""Answers as JSON bytes: evaluations and the error shape. Pure, and cheap on the hot path."""

from __future__ import annotations

from typing import Any

import orjson

from flagcore import Evaluation
from services.http.errors import error_body
from services.query.documents import event_block

OPTIONS = orjson.OPT_UTC_Z


def evaluation(e: Evaluation) -> dict[str, Any]:
    """One evaluation, in the shape docs/architecture.md gives."""
    return {
        "flag_key": e.flag_key,
        "value": e.value,
        "reason": e.reason.value,
        "level": None if e.level is None else e.level.value,
        "error_code": None if e.error_code is None else e.error_code.value,
        "variant": e.variant,
        "rule": e.rule,
        "explanation": e.explain(),
        "rollout": None if e.rollout_percentage is None else {"percentage": e.rollout_percentage, "bucket": e.bucket},
        "event": event_block(e.source),
    }


def dumps(value: Any) -> bytes:
    return orjson.dumps(value, option=OPTIONS)


def error(code: str, detail: str, field: str | None = None, **extra: Any) -> bytes:
    """The product's error document (`services.http.error_body`), as bytes."""
    return orjson.dumps(error_body(code, detail, field, **extra))
