"""Taking connections from the listening socket the workers share, so that each holds about as many as the others.

Clients such as connection pools and proxies keep a few connections for long,
so how those few are spread decides how busy each worker is. Neither usual way
spreads them: uvloop's own accept loop takes every waiting connection at once
(the first worker to wake took all 16 of wrk's in two runs of three here), and a
socket per worker with SO_REUSEPORT spreads them by a hash (11/5 splits of 16
were common, and the worker with 11 was the bottleneck). Here every worker
counts its open connections in memory the workers share, and takes a waiting
connection only while it holds no more than any other; one that holds more
steps aside for a moment, and takes it after all if nobody else has (a busy or
stuck worker never leaves a client waiting long).
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable, MutableSequence

__all__ = ["GONE", "BalancedAcceptor"]

log = logging.getLogger("flagstream.http")

GONE = 1 << 30  # the count of a worker that is not running: never the lowest
STEP_ASIDE = 0.002  # seconds a worker with more connections than another waits before it looks again
PATIENCE = 3  # times it steps aside for one waiting connection before it takes it after all


class BalancedAcceptor:
    """One worker's side: accept from `listener` while `counts[index]` is the lowest; `closed` gives one back."""

    def __init__(
        self,
        listener: socket.socket,
        counts: MutableSequence[int],
        index: int,
        connect: Callable[[socket.socket], None],
    ) -> None:
        self._listener = listener
        self._counts = counts
        self._index = index
        self._connect = connect  # hands an accepted socket to the event loop's transport
        self._stepped_aside = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._counts[self._index] = 0
        loop.add_reader(self._listener.fileno(), self._ready)

    def close(self) -> None:
        """Stop accepting (the socket stays open for the other workers until they stop too)."""
        if self._timer is not None:
            self._timer.cancel()
        if self._loop is not None:
            self._loop.remove_reader(self._listener.fileno())
            self._loop = None

    def closed(self) -> None:
        self._counts[self._index] -= 1

    def _lowest(self) -> bool:
        counts, mine = self._counts, self._counts[self._index]
        return all(mine <= count for i, count in enumerate(counts) if i != self._index)

    def _ready(self) -> None:
        while True:
            if not self._lowest() and self._stepped_aside < PATIENCE:
                self._step_aside(STEP_ASIDE)
                return
            try:
                client, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                self._stepped_aside = 0  # nothing waits (another worker took it)
                return
            except OSError as exc:  # out of file descriptors, say: look again shortly rather than spin
                log.error("accepting a connection failed: %s", exc)
                self._step_aside(0.1)
                return
            self._stepped_aside = 0
            self._counts[self._index] += 1
            client.setblocking(False)
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._connect(client)

    def _step_aside(self, seconds: float) -> None:
        loop = self._loop
        if loop is None:
            return
        self._stepped_aside += 1
        loop.remove_reader(self._listener.fileno())
        self._timer = loop.call_later(seconds, self._look_again)

    def _look_again(self) -> None:
        self._timer = None
        if self._loop is not None:
            self._loop.add_reader(self._listener.fileno(), self._ready)
