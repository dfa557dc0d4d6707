"""The query service's exception tree; `services.query.refusals` maps each to an HTTP answer."""

from __future__ import annotations


class QueryError(Exception):
    """Base of every error the query service raises on purpose."""


class InvalidParameter(QueryError):
    """A path or query parameter is malformed (422, naming the field)."""

    def __init__(self, field: str, detail: str) -> None:
        super().__init__(detail)
        self.field = field
        self.detail = detail


class UnknownFlag(QueryError):
    """The catalogue has no such flag (404 on the single-flag endpoint)."""

    def __init__(self, flag_key: str) -> None:
        super().__init__(f"no flag {flag_key!r} in the catalogue")
        self.flag_key = flag_key


class Unavailable(QueryError):
    """A dependency the answer needs is down (503); Redis never is one: it is only a cache."""

    def __init__(self, dependency: str, detail: str) -> None:
        super().__init__(f"{dependency} unavailable: {detail}")
        self.dependency = dependency
        self.detail = detail
