"""Redis key and channel names shared by the projector (writer) and the query service.

Three kinds of cached document: the catalogue (definitions and system
defaults), one org's org- and platform-level overrides, one user's overrides.
The projector deletes exactly the documents an event changed and publishes the
same names on the invalidation channel so replicas drop in-process copies;
`{"scope": "all"}` on it means every document (a purge).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class CacheKeys:
    prefix: str = "flags"

    @property
    def catalog(self) -> str:
        return f"{self.prefix}:v1:catalog"

    def org(self, org_id: str) -> str:
        return f"{self.prefix}:v1:org:{org_id}"

    def user(self, org_id: str, user_id: str) -> str:
        return f"{self.prefix}:v1:org:{org_id}:user:{user_id}"

    @property
    def invalidation_channel(self) -> str:
        return f"{self.prefix}:v1:invalidate"

    @property
    def documents(self) -> str:
        """A `SCAN MATCH` pattern of every cached document (the prefix's glob characters escaped)."""
        escaped = "".join(f"\\{c}" if c in "*?[]\\" else c for c in self.prefix)
        return f"{escaped}:v1:*"
