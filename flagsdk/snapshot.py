"""Snapshots: a document ↔ the fold's state for one org and the topic offsets that state covers.

The document is what `GET /v1/orgs/{org}/bootstrap` answers (services/query/snapshots.py)
and what the client writes to its snapshot file: the state in `flagcore.history`'s
snapshot format (one document per scope: the catalogue's, the org's), so the pure
core both writes and restores it, and the next offset to fold per partition.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import orjson

from flagcore import FlagState
from flagcore.history import SYSTEM_SCOPE, restore
from flagcore.history import snapshot as scope_snapshot
from flagsdk.errors import SnapshotError


@dataclass(frozen=True, slots=True)
class Snapshot:
    org_id: str
    topic: str
    state: FlagState
    offsets: dict[int, int]  # partition → next offset to fold; a partition not named starts at 0


def parse(raw: bytes, *, org_id: str) -> Snapshot:
    """Rebuild the state; `SnapshotError` if the document is unreadable or is another org's."""
    try:
        doc = orjson.loads(raw)
        if doc["org_id"] != org_id:
            raise SnapshotError(f"the snapshot is for org {doc['org_id']!r}, not {org_id!r}")
        scopes = doc["scopes"]
        if set(scopes) != {SYSTEM_SCOPE, org_id}:
            raise SnapshotError(f"the snapshot holds scopes {sorted(scopes)}, not the catalogue's and {org_id!r}")
        state = restore(scopes)
        offsets = {int(p): int(o) for p, o in doc["offsets"].items()}
        return Snapshot(org_id, str(doc["topic"]), state, offsets)
    except SnapshotError:
        raise
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise SnapshotError(f"unreadable snapshot document: {exc!r}") from exc


def dump(state: FlagState, *, org_id: str, topic: str, offsets: dict[int, int]) -> bytes:
    """The document for `state` (call it with the fold paused: it reads every table)."""
    scopes = {scope: scope_snapshot(state, scope).doc for scope in (SYSTEM_SCOPE, org_id)}
    body = {"org_id": org_id, "topic": topic, "offsets": {str(p): o for p, o in offsets.items()}, "scopes": scopes}
    return orjson.dumps(body)


def load(path: Path, *, org_id: str) -> Snapshot:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise SnapshotError(f"cannot read snapshot {path}: {exc}") from exc
    return parse(raw, org_id=org_id)


def save(path: Path, raw: bytes) -> None:
    """Write atomically: a crash mid-write leaves the previous snapshot, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(raw)
    os.replace(tmp, path)
