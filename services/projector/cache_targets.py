"""The query service's cached documents an event makes stale, and the message that invalidates one."""

from __future__ import annotations

from dataclasses import dataclass

from events import Level, Scope


@dataclass(frozen=True, slots=True, order=True)
class CacheTarget:
    """One cached document of the query service: the catalogue, an org's rules, a user's rules."""

    scope: str  # "catalog" | "org" | "user"
    org_id: str | None = None
    user_id: str | None = None

    @classmethod
    def of(cls, scope: Scope | None) -> CacheTarget:
        """The document an event at `scope` changes (None: a definition event)."""
        if scope is None or scope.level is Level.SYSTEM:
            return CATALOG
        assert scope.org_id is not None
        if scope.level is Level.USER:
            return cls("user", scope.org_id, scope.user_id)
        return cls("org", scope.org_id)

    def message(self) -> dict[str, str]:
        """The invalidation message, as docs/architecture.md gives it."""
        if self.scope == "catalog":
            return {"scope": "catalog"}
        assert self.org_id is not None
        if self.scope == "org":
            return {"scope": "org", "org_id": self.org_id}
        assert self.user_id is not None
        return {"scope": "user", "org_id": self.org_id, "user_id": self.user_id}


CATALOG = CacheTarget("catalog")
