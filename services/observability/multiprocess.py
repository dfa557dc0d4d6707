"""Multiprocess mode for a service that forks workers: one fresh directory per service start.

Every worker's counters and histograms are files in that directory (the
library's multiprocess mode), so the page any worker renders sums them all and
a worker that died still counts what it counted. `prepare` runs in the parent
before it forks; `remove` when the service stops. The library picks its value
store when first imported, so `prepare` makes it pick again if it was imported
already (the parent imports the service's modules before it forks).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile

__all__ = ["ENV", "prepare", "remove"]

ENV = "PROMETHEUS_MULTIPROC_DIR"


def prepare(service: str) -> str:
    """A new, empty directory for this start's values, named in the environment the workers inherit."""
    path = tempfile.mkdtemp(prefix=f"flagstream-{service}-metrics-")
    os.environ[ENV] = path
    values = sys.modules.get("prometheus_client.values")
    if values is not None:
        values.ValueClass = values.get_value_class()  # type: ignore[attr-defined]
    return path


def remove(path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)
