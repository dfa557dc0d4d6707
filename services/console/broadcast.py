"""Fan-out of the topic's events to the open pages, and the delay figures of what went through.

Pure (asyncio queues, no Kafka): `live.TopicFeed` publishes into a `Broadcaster`, the audit page's
live stream subscribes to it, the status page reads its delays.
"""

from __future__ import annotations

import asyncio
from collections import deque
from datetime import UTC, datetime
from typing import Any

__all__ = ["Broadcaster", "median_and_p99"]

QUEUE_SIZE = 1000


class Broadcaster:
    """Fan-out to subscribers; a subscriber that cannot keep up loses its oldest entries, never blocks the feed."""

    def __init__(self, *, keep: int = 500) -> None:
        self._subscribers: set[asyncio.Queue[dict[str, Any]]] = set()
        self.delays: deque[float] = deque(maxlen=keep)  # seconds from commit to this consumer
        self.seen = 0

    def subscribe(self) -> asyncio.Queue[dict[str, Any]]:
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(QUEUE_SIZE)
        self._subscribers.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[dict[str, Any]]) -> None:
        self._subscribers.discard(queue)

    def publish(self, envelope: dict[str, Any], *, received: datetime | None = None) -> None:
        self.seen += 1
        occurred = datetime.fromisoformat(str(envelope["occurred_at"]).replace("Z", "+00:00"))
        self.delays.append(max(0.0, ((received or datetime.now(UTC)) - occurred).total_seconds()))
        for queue in self._subscribers:
            if queue.full():
                queue.get_nowait()
            queue.put_nowait(envelope)


def median_and_p99(values: list[float]) -> tuple[float, float] | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[len(ordered) // 2], ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
