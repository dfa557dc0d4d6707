"""The native API's answer to each of the query service's errors, written once.

The app's exception handler and the hot path (`fastpath`, which answers
`GET /v1/orgs/{org_id}/flags/{flag_key}` before the app) both send it, so the two
cannot drift apart. OFREP's routes answer in OFREP's own error shape (`ofrep`).
"""

from __future__ import annotations

import logging

from services.query import rendering
from services.query.errors import InvalidParameter, QueryError, Unavailable, UnknownFlag

log = logging.getLogger(__name__)


def refusal(exc: QueryError) -> tuple[int, bytes]:
    """The status and JSON body that answer `exc`; an outage is logged."""
    if isinstance(exc, InvalidParameter):
        return 422, rendering.error("invalid_request", exc.detail, exc.field)
    if isinstance(exc, UnknownFlag):
        return 404, rendering.error("unknown_flag", str(exc), "flag_key", flag_key=exc.flag_key)
    if isinstance(exc, Unavailable):
        log.warning("answering 503: %s", exc)
        detail = f"{exc.dependency} is unavailable"
        return 503, rendering.error("unavailable", detail, None, dependency=exc.dependency)
    raise TypeError(f"no answer for {type(exc).__name__}")
