"""The listening socket and the worker processes that share it; a graceful stop on SIGTERM or SIGINT.

The parent checks the port is free (so a port in use fails once, with a clear
error) and forks the workers, each with its own listening socket on the port
(SO_REUSEPORT: the kernel spreads connections over them), its own event loop
(uvloop) and its own `Site`: the handler and what it needs started and stopped. A worker that dies
after it started is replaced; one that fails to start stops the service, as
starting again would fail the same way. On SIGTERM each worker stops accepting,
finishes the answers it owes (the last one saying `connection: close`), closes
idle connections, and stops its site.
"""

from __future__ import annotations

import asyncio
import gc
import importlib
import logging
import multiprocessing
import os
import signal
import socket
import time
from collections.abc import Awaitable, Callable
from multiprocessing.connection import wait
from multiprocessing.synchronize import Event
from typing import Protocol

import uvloop

from services.httpserver.connection import Connection, Connections, Headers, Limits
from services.httpserver.message import Reply, Request

__all__ = ["Site", "serve"]

log = logging.getLogger("flagstream.http")

DRAIN_SECONDS = 10.0  # how long a stopping worker waits for the answers it owes


class Site(Protocol):
    """What a worker serves: started before the first connection is accepted, stopped after the last is closed."""

    async def start(self) -> None: ...

    def handle(self, request: Request) -> Reply | Awaitable[Reply]: ...

    async def stop(self) -> None: ...


def serve(
    site_factory: str, *, host: str, port: int, workers: int = 2, limits: Limits | None = None, headers: Headers = ()
) -> None:
    """Serve the `Site` that `site_factory` ("module:function") makes in each of `workers` processes.

    `headers` go on every answer the server writes itself (a refusal of a malformed or oversized request, a 500).
    """
    limits = limits or Limits()
    _bind(host, port, share=False).close()  # a port in use fails here, once, with a clear error
    context = multiprocessing.get_context("fork")  # nothing runs yet in this process: no loop, no threads
    running: dict[int, tuple[multiprocessing.process.BaseProcess, Event]] = {}
    stopping = False

    def start() -> None:
        ready = context.Event()
        process = context.Process(target=_work, args=(host, port, site_factory, limits, tuple(headers), ready))
        process.start()
        running[process.sentinel] = (process, ready)

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for process, _ in running.values():
            if process.pid is not None:
                os.kill(process.pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for _ in range(workers):
        start()
    log.info("serving on http://%s:%d with %d workers", host, port, workers)
    failed = False
    while running:
        for sentinel in wait(list(running), timeout=1.0):
            process, ready = running.pop(sentinel)  # type: ignore[call-overload]
            process.join()
            if stopping:
                continue
            if not ready.is_set():
                log.error("a worker failed to start (exit code %s); stopping", process.exitcode)
                failed = True
                stop(signal.SIGTERM, None)
                continue
            log.error("worker %s died (exit code %s); starting another", process.pid, process.exitcode)
            time.sleep(0.5)
            start()
    if failed:
        raise SystemExit(1)


def _bind(host: str, port: int, *, share: bool) -> socket.socket:
    """A socket bound to the port; `share`: each worker's own (SO_REUSEPORT), among which the kernel spreads clients.

    One socket shared by the workers is worse: uvloop accepts every waiting connection at once, so the first
    worker to wake took all 16 of wrk's connections in two runs of three here, and the other worker idled.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if share:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        listener.bind((host, port))
    except OSError as exc:
        listener.close()
        raise SystemExit(f"cannot listen on {host}:{port}: {exc.strerror}") from exc
    return listener


def _work(host: str, port: int, site_factory: str, limits: Limits, headers: Headers, ready: Event) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent forwards it as SIGTERM: one stop, not two
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(_serve(_bind(host, port, share=True), _import(site_factory)(), Connections(limits, headers), ready))


async def _serve(listener: socket.socket, site: Site, connections: Connections, ready: Event) -> None:
    loop = asyncio.get_running_loop()
    stopped = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stopped.set)
    await site.start()
    # What startup made (the app, its models, the modules) lives as long as the worker; left to the collector,
    # every full collection walks it (80 ms measured, a p99 spike under load). Frozen, a collection sees only
    # what requests made since.
    gc.freeze()
    server = await loop.create_server(lambda: Connection(site.handle, connections), sock=listener, backlog=1024)
    connections.start(loop)
    ready.set()
    await stopped.wait()
    server.close()
    connections.shut_down()
    deadline = loop.time() + DRAIN_SECONDS
    while len(connections) and loop.time() < deadline:
        await asyncio.sleep(0.05)
    connections.close_all()
    await site.stop()


def _import(path: str) -> Callable[[], Site]:
    module, _, name = path.partition(":")
    factory: Callable[[], Site] = getattr(importlib.import_module(module), name)
    return factory
