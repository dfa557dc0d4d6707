"""What the query service's routes read besides the evaluation documents (`service.DocumentSource`), as protocols.

`bootstrap` plugs the Postgres adapters in; a test can plug anything that answers the same.
"""

from __future__ import annotations

from typing import Any, Protocol


class OverrideCounts(Protocol):
    """Across every org: how many orgs override each flag (system-wide readers only)."""

    async def override_counts(self) -> list[dict[str, Any]]: ...


class Snapshots(Protocol):
    """What an in-process SDK starts from: the org's state and the topic offsets it covers, serialised."""

    async def read(self, org_id: str) -> bytes: ...
