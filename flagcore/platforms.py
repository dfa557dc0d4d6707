"""The design notes' platform helpers: is a tenant's ad platform switched on?"""

from __future__ import annotations

from events import Platform
from flagcore.evaluation import evaluate
from flagcore.model import Catalog, TenantRules


def platform_flag(platform: Platform | str) -> str:
    return f"platform.{Platform(platform).value}.enabled"


def is_platform_enabled(
    catalog: Catalog, tenant: TenantRules, platform: Platform | str, *, user_id: str | None = None
) -> bool:
    p = Platform(platform)
    return evaluate(catalog, tenant, platform_flag(p), platform=p.value, user_id=user_id).value is True


def enabled_platforms(
    catalog: Catalog, tenant: TenantRules, *, user_id: str | None = None
) -> list[Platform]:
    return [p for p in Platform if is_platform_enabled(catalog, tenant, p, user_id=user_id)]
