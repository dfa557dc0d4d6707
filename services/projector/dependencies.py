"""What the projector's consumer uses, in one typed object: connected by `bootstrap`'s lifespan.

The subscriber applies each batch with `connected()`; the rebalance listener positions the
partitions at `offsets` (None until connected: it then leaves Kafka's committed offsets).
"""

from __future__ import annotations

from dataclasses import dataclass

from services.infra.settings import Settings
from services.projector.metrics import ProjectorMetrics
from services.projector.ports import StoredOffsets
from services.projector.projection import Projector

__all__ = ["Wiring"]


@dataclass(eq=False)
class Wiring:
    """The use case and the stored offsets behind the consumer; None until connected."""

    settings: Settings
    projector: Projector | None = None
    offsets: StoredOffsets | None = None
    metrics: ProjectorMetrics | None = None  # made with the subscriber, served by the lifespan

    def connected(self) -> Projector:
        if self.projector is None:  # a batch before the lifespan connected: nacked, delivered again
            raise RuntimeError("the projector is not connected yet")
        return self.projector
