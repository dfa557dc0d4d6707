"""A small server-sent-events client over httpx, for the change stream's tests and `bench.ofrep_stream`.

It reads the stream in a task of its own and hands out what arrives, each block
stamped with `time.perf_counter()` when its last line was read: an event (`id`,
`data` as JSON) or a comment. Parsed as the WHATWG rules say for what our server
sends (one `data:` line per event); nothing here is the product's code.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from typing import Any

import httpx
import orjson


@dataclass(frozen=True)
class Block:
    """One block of the stream: an event (`data` set) or a comment; `at` is `perf_counter()` on arrival."""

    at: float
    id: str | None = None
    data: Any = None
    comment: str | None = None
    retry: int | None = None

    @property
    def is_refetch(self) -> bool:
        return isinstance(self.data, dict) and self.data.get("type") == "refetchEvaluation"


class EventStream:
    """`async with EventStream(url, headers) as stream`: `stream.status`, then `await stream.next()`."""

    def __init__(self, url: str, headers: dict[str, str], *, last_event_id: str | None = None) -> None:
        self._url = url
        self._headers = {**headers, "Accept": "text/event-stream"}
        if last_event_id is not None:
            self._headers["Last-Event-ID"] = last_event_id
        self._client = httpx.AsyncClient(timeout=httpx.Timeout(10.0, read=None))
        self._response: httpx.Response | None = None
        self._task: asyncio.Task[None] | None = None
        self.blocks: asyncio.Queue[Block] = asyncio.Queue()
        self.status = 0
        self.headers: httpx.Headers = httpx.Headers()
        self.body = b""  # a refusal's body

    async def __aenter__(self) -> EventStream:
        request = self._client.build_request("GET", self._url, headers=self._headers)
        self._response = await self._client.send(request, stream=True)
        self.status = self._response.status_code
        self.headers = self._response.headers
        if self.status != 200:
            self.body = await self._response.aread()
        else:
            self._task = asyncio.create_task(self._read(self._response))
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, httpx.HTTPError):
                await self._task
        if self._response is not None:
            await self._response.aclose()
        await self._client.aclose()

    async def next(self, timeout: float = 5.0) -> Block:
        return await asyncio.wait_for(self.blocks.get(), timeout)

    async def next_event(self, timeout: float = 5.0) -> Block:
        """The next event, skipping comments and `retry`."""
        deadline = time.monotonic() + timeout
        while True:
            block = await self.next(max(0.0, deadline - time.monotonic()))
            if block.data is not None:
                return block

    async def _read(self, response: httpx.Response) -> None:
        fields: dict[str, str] = {}
        comment: str | None = None
        async for line in response.aiter_lines():
            if line == "":
                if fields or comment is not None:
                    data = fields.get("data")
                    retry = fields.get("retry")
                    self.blocks.put_nowait(
                        Block(
                            time.perf_counter(),
                            id=fields.get("id"),
                            data=None if data is None else orjson.loads(data),
                            comment=comment,
                            retry=None if retry is None else int(retry),
                        )
                    )
                fields, comment = {}, None
                continue
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "":
                comment = value
            else:
                fields[name] = value
