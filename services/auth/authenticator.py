"""Turning an `Authorization: Bearer` header into a `Principal`, fast and revocable.

Key records are cached in-process for `ttl` seconds (default 0.5 s), so a
revocation or expiry written by any replica is honoured by every replica within
a second. A header already verified against the cached record maps straight to
its `Principal` for the rest of that record's life, so the hot path costs one
dict lookup (no parsing, no SHA-256); concurrent misses for one key share a
single database lookup.

With `refresh_after` (the query service: half the ttl), a key in use has its
record read again in the background once it is that old, while its requests go
on with the verified principal, which is still never older than `ttl`. Without
it, every `ttl` all of a key's requests in flight wait on that read together
(under load on 2 cores, tens of milliseconds: a p99 spike every half second).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from services.auth.keys import matches, parse_key_id
from services.auth.policy import Principal, Role

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class KeyRecord:
    key_id: str
    name: str
    role: Role
    org_id: str | None
    secret_hash: str
    expires_at: datetime | None
    revoked_at: datetime | None


class KeyLookup(Protocol):
    async def find_key(self, key_id: str) -> KeyRecord | None: ...

    async def touch_key(self, key_id: str, at: datetime) -> None:
        """Record that the key was used (best effort)."""
        ...


class Unauthenticated(Exception):
    """No usable key. The detail never says which part was wrong beyond what the caller sent."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class KeyStoreUnavailable(Exception):
    """The key store cannot be reached: the key may well be valid, so this is a 503 "retry later", never a 401."""


class Authenticator:
    def __init__(
        self,
        lookup: KeyLookup,
        *,
        ttl: float = 0.5,
        touch_every: float = 60.0,
        refresh_after: float | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._lookup = lookup
        self._ttl = ttl
        self._refresh_after = refresh_after
        self._refreshing: set[str] = set()
        self._touch_every = touch_every
        self._monotonic = monotonic
        self._now = now
        self._cache: dict[str, tuple[float, KeyRecord | None]] = {}
        self._verified: dict[str, tuple[float, Principal]] = {}  # header -> (its record's fetch time, principal)
        self._fetching: dict[str, asyncio.Future[KeyRecord | None]] = {}
        self._touched: dict[str, float] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def authenticate(self, authorization: str | None) -> Principal:
        if not authorization:
            raise Unauthenticated("an API key is required: send `Authorization: Bearer <key>`")
        principal = self.verified(authorization)
        if principal is not None:
            return principal
        return await self._verify(authorization)  # which refuses an expired key against its cached record

    def verified(self, authorization: str | None) -> Principal | None:
        """`authenticate`'s answer if it needs no lookup (a header verified within the ttl, unexpired); else None."""
        verified = self._verified.get(authorization) if authorization else None
        if verified is None:
            return None
        age = self._monotonic() - verified[0]
        principal = verified[1]
        if age >= self._ttl or (principal.expires_at is not None and principal.expires_at <= self._now()):
            return None
        if self._refresh_after is not None and age >= self._refresh_after:
            self._refresh(authorization, principal.key_id)  # type: ignore[arg-type]  # not None: it was found
        self._maybe_touch(principal.key_id)
        return principal

    def _refresh(self, authorization: str, key_id: str) -> None:
        """Verify `authorization` again against a record read now, off the request that noticed its age."""
        if key_id in self._refreshing:
            return
        self._refreshing.add(key_id)
        task = asyncio.get_running_loop().create_task(self._reverify(authorization, key_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _reverify(self, authorization: str, key_id: str) -> None:
        try:
            await self._verify(authorization, max_age=0.0)
        except Unauthenticated:
            self._verified.pop(authorization, None)  # revoked or expired: the next request is refused
        except Exception as exc:  # the request path reads the record itself once it is `ttl` old
            log.warning("could not read key %s again ahead of its expiry: %r", key_id, exc)
        finally:
            self._refreshing.discard(key_id)

    async def _verify(self, authorization: str, *, max_age: float | None = None) -> Principal:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise Unauthenticated("use `Authorization: Bearer <key>`")
        token = token.strip()
        key_id = parse_key_id(token)
        record = await self._record(key_id, max_age) if key_id is not None else None
        if record is None or not matches(token, record.secret_hash):
            raise Unauthenticated("invalid API key")
        if record.revoked_at is not None:  # whatever its timestamp: replica clocks may disagree
            raise Unauthenticated("this API key has been revoked")
        if record.expires_at is not None and record.expires_at <= self._now():
            raise Unauthenticated("this API key has expired")
        self._maybe_touch(record.key_id)
        principal = Principal(record.key_id, record.name, record.role, record.org_id, record.expires_at)
        if len(self._verified) > 10_000:
            self._verified.clear()  # bounded; only verified headers ever get in
        assert key_id is not None  # the record was found by it
        self._verified[authorization] = (self._cache[key_id][0], principal)
        return principal

    async def _record(self, key_id: str, max_age: float | None = None) -> KeyRecord | None:
        at = self._monotonic()
        cached = self._cache.get(key_id)
        if cached is not None and at - cached[0] < (self._ttl if max_age is None else max_age):
            return cached[1]
        pending = self._fetching.get(key_id)
        if pending is not None:  # another request is fetching this key right now: share its answer
            return await asyncio.shield(pending)
        pending = self._fetching[key_id] = asyncio.get_running_loop().create_future()
        try:
            record = await self._lookup.find_key(key_id)
        except BaseException as exc:
            pending.set_exception(exc)
            pending.exception()  # retrieved: no "never retrieved" warning when nobody else waited
            raise
        finally:
            del self._fetching[key_id]
        pending.set_result(record)
        if len(self._cache) > 100_000:
            self._cache.clear()  # bounded: unknown ids sent by a prober must not grow memory
        self._cache[key_id] = (at, record)
        return record

    def _maybe_touch(self, key_id: str) -> None:
        at = self._monotonic()
        if at - self._touched.get(key_id, float("-inf")) < self._touch_every:
            return
        self._touched[key_id] = at
        task = asyncio.get_running_loop().create_task(self._touch(key_id, self._now()))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _touch(self, key_id: str, now: datetime) -> None:
        try:
            await self._lookup.touch_key(key_id, now)
        except Exception as exc:  # last-used is informative; never fail a request over it
            log.warning("could not record last use of key %s: %s", key_id, exc)
