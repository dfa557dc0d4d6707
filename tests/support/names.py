"""Fresh flag keys and org ids, so tests that share a database or a store never see each other's streams."""

from __future__ import annotations

import uuid


def fresh_key() -> str:
    return f"t{uuid.uuid4().hex[:10]}.enabled"


def fresh_org() -> str:
    return f"org-{uuid.uuid4().hex[:10]}"
