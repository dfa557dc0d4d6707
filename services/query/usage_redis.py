"""The evaluation counts in Redis: one hash per (minute, org), flag → count, plus one per minute for all orgs.

A flush is one pipeline (no MULTI: each HINCRBY is atomic on its own, and a partly applied
flush only undercounts) of HINCRBY per (minute, org, flag) into the org's hash and the
minute's all-orgs hash, and one EXPIRE per hash touched. Reading a window is one HGETALL
per minute. The all-orgs hash is named `*`, which no org id can be (`events.vocabulary`).
Keys start with `usage:`, outside the cache's `{prefix}:` namespace: counts are not
cached documents, and whatever scans or checks the cache never meets a hash there.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from redis.asyncio import Redis
from redis.exceptions import RedisError

from services.query.usage import RETENTION_MINUTES

__all__ = ["ALL_ORGS", "FAILURES", "RedisUsage"]

ALL_ORGS = "*"
FAILURES: tuple[type[BaseException], ...] = (RedisError, OSError)


class RedisUsage:
    def __init__(self, redis: Redis, prefix: str, *, retention_minutes: int = RETENTION_MINUTES) -> None:
        self._redis = redis
        self._prefix = prefix
        self._ttl = retention_minutes * 60

    def key(self, minute: int, org_id: str | None) -> str:
        return f"usage:{self._prefix}:v1:{minute}:{ALL_ORGS if org_id is None else org_id}"

    async def add(self, counts: Mapping[tuple[int, str, str], int]) -> None:
        touched: set[str] = set()
        async with self._redis.pipeline(transaction=False) as pipe:
            for (minute, org_id, flag_key), n in counts.items():
                for key in (self.key(minute, org_id), self.key(minute, None)):
                    pipe.hincrby(key, flag_key, n)
                    touched.add(key)
            for key in touched:
                pipe.expire(key, self._ttl)
            await pipe.execute()

    async def read(self, org_id: str | None, minutes: Sequence[int]) -> dict[int, dict[str, int]]:
        async with self._redis.pipeline(transaction=False) as pipe:
            for minute in minutes:
                pipe.hgetall(self.key(minute, org_id))
            found = await pipe.execute()
        return {
            minute: {_text(flag): int(n) for flag, n in fields.items()}
            for minute, fields in zip(minutes, found, strict=True)
            if fields
        }


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
