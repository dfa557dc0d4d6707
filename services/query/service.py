"""The query use cases: fetch the three documents through the cache and evaluate with the pure core."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Protocol

from events import Level, Platform
from flagcore import (
    Evaluation,
    ScheduledStep,
    TenantRules,
    enabled_platforms,
    evaluate,
    evaluate_all,
    format_instant,
    parse_instant,
)
from services.infra.cache_keys import CacheKeys
from services.query.cache import DocumentCache
from services.query.documents import (
    NO_USER,
    CompiledCatalog,
    CompiledOrg,
    CompiledUser,
    compile_catalog,
    compile_org,
    compile_user,
)
from services.query.errors import UnknownFlag


class DocumentSource(Protocol):
    """Where documents come from on a miss (Postgres, under RLS)."""

    async def catalog(self) -> bytes: ...
    async def org(self, org_id: str) -> bytes: ...
    async def user(self, org_id: str, user_id: str) -> bytes: ...
    async def scheduled(self, org_id: str) -> list[dict[str, Any]]: ...


class QueryService:
    def __init__(self, cache: DocumentCache, source: DocumentSource, keys: CacheKeys) -> None:
        self.cache = cache
        self._source = source
        self._keys = keys

    async def catalog(self) -> CompiledCatalog:
        return await self.cache.get(self._keys.catalog, self._source.catalog, compile_catalog)

    async def org(self, org_id: str) -> CompiledOrg:
        return await self.cache.get(self._keys.org(org_id), lambda: self._source.org(org_id), compile_org)

    async def user(self, org_id: str, user_id: str) -> CompiledUser:
        return await self.cache.get(
            self._keys.user(org_id, user_id), lambda: self._source.user(org_id, user_id), compile_user
        )

    def at_hand(
        self, org_id: str, user_id: str | None
    ) -> tuple[CompiledCatalog, CompiledOrg, CompiledUser | None] | None:
        """The catalogue, the org's and the user's documents if the in-process cache holds all three; else None."""
        peek = self.cache.peek
        catalog = peek(self._keys.catalog)
        org = peek(self._keys.org(org_id))
        if catalog is None or org is None:
            return None
        if user_id is None:
            return catalog, org, None
        user = peek(self._keys.user(org_id, user_id))
        return None if user is None else (catalog, org, user)

    async def tenant(self, org_id: str, user_id: str | None) -> TenantRules:
        org = await self.org(org_id)
        user = NO_USER if user_id is None else (await self.user(org_id, user_id)).user
        return TenantRules(org_id, org.org, org.platform, user, org.rules)

    async def evaluate(
        self,
        org_id: str,
        flag_key: str,
        *,
        platform: str | None,
        user_id: str | None,
        now: datetime | None = None,
        context: Mapping[str, Any] | None = None,
    ) -> Evaluation:
        """One flag at `now` (default: the current time) for `context`'s attributes (what targeting rules read);
        `UnknownFlag` when the catalogue lacks it."""
        catalog = (await self.catalog()).catalog
        if flag_key not in catalog.definitions:
            raise UnknownFlag(flag_key)
        tenant = await self.tenant(org_id, user_id)
        return evaluate(catalog, tenant, flag_key, platform=platform, user_id=user_id, now=now, context=context)

    async def evaluate_all(
        self,
        org_id: str,
        *,
        platform: str | None,
        user_id: str | None,
        now: datetime | None = None,
        context: Mapping[str, Any] | None = None,
    ) -> list[Evaluation]:
        catalog = (await self.catalog()).catalog
        tenant = await self.tenant(org_id, user_id)
        return evaluate_all(catalog, tenant, platform=platform, user_id=user_id, now=now, context=context)

    async def schedules(self, org_id: str, *, now: datetime, flag_key: str | None = None) -> list[dict[str, Any]]:
        """Steps still to come for the org (its system defaults, org, platform and user overrides), by instant.

        Read fresh for the overrides (an operator's listing, not the hot path); the catalogue from the cache.
        """
        catalog = (await self.catalog()).catalog
        found = [
            _entry(key, Level.SYSTEM, None, None, step)
            for key, setting in catalog.system.items()
            for step in setting.schedule
            if step.at > now
        ]
        for row in await self._source.scheduled(org_id):
            for raw in row["schedule"]:
                step = ScheduledStep.from_value(raw)
                if step.at > now:
                    found.append(_entry(row["flag_key"], Level(row["level"]), row["platform"], row["user_id"], step))
        if flag_key is not None:
            found = [e for e in found if e["flag_key"] == flag_key]
        found.sort(
            key=lambda e: (parse_instant(e["at"]), e["flag_key"], e["level"], e["platform"] or "", e["user_id"] or "")
        )
        return found

    async def enabled_platforms(self, org_id: str, *, user_id: str | None) -> list[Platform]:
        catalog = (await self.catalog()).catalog
        tenant = await self.tenant(org_id, user_id)
        return enabled_platforms(catalog, tenant, user_id=user_id)


def _entry(
    flag_key: str, level: Level, platform: str | None, user_id: str | None, step: ScheduledStep
) -> dict[str, Any]:
    return {
        "flag_key": flag_key,
        "level": level.value,
        "platform": platform or None,
        "user_id": user_id or None,
        "at": format_instant(step.at),
        "enabled": step.enabled,
        "rollout_percentage": step.rollout_percentage,
    }
