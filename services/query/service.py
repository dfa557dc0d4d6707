"""The query use cases: fetch the three documents through the cache and evaluate with the pure core."""

from __future__ import annotations

from typing import Protocol

from events import Platform
from flagcore import Evaluation, TenantRules, enabled_platforms, evaluate, evaluate_all
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

    async def tenant(self, org_id: str, user_id: str | None) -> TenantRules:
        org = await self.org(org_id)
        user = NO_USER if user_id is None else (await self.user(org_id, user_id)).user
        return TenantRules(org_id, org.org, org.platform, user)

    async def evaluate(self, org_id: str, flag_key: str, *, platform: str | None, user_id: str | None) -> Evaluation:
        """One flag; `UnknownFlag` when the catalogue lacks it."""
        catalog = (await self.catalog()).catalog
        if flag_key not in catalog.definitions:
            raise UnknownFlag(flag_key)
        tenant = await self.tenant(org_id, user_id)
        return evaluate(catalog, tenant, flag_key, platform=platform, user_id=user_id)

    async def evaluate_all(self, org_id: str, *, platform: str | None, user_id: str | None) -> list[Evaluation]:
        catalog = (await self.catalog()).catalog
        tenant = await self.tenant(org_id, user_id)
        return evaluate_all(catalog, tenant, platform=platform, user_id=user_id)

    async def enabled_platforms(self, org_id: str, *, user_id: str | None) -> list[Platform]:
        catalog = (await self.catalog()).catalog
        tenant = await self.tenant(org_id, user_id)
        return enabled_platforms(catalog, tenant, user_id=user_id)
