"""Application guards over an SDK client holding a known state: routes, middleware, jobs, webhooks."""

from __future__ import annotations

import asyncio
import logging

import httpx
import pytest
from fastapi import Depends, FastAPI

from events import FlagDefined, OrgOverrideSet, Platform, PlatformOverrideSet, SystemDefaultSet, UserOverrideSet
from flagcore import fold
from flagsdk import FlagClient
from flagsdk.guards import (
    SKIPPED,
    FeatureGate,
    enabled_platforms,
    is_platform_enabled,
    platform_webhook,
    require_flag,
    skip_unless_enabled,
)
from tests.support.factories import LogBuilder

ORG = "acme"
AI, PUBLISH = "ai.insights.enabled", "campaign.publishing.enabled"


@pytest.fixture
def flags() -> FlagClient:
    log = LogBuilder()
    log.extend([
        FlagDefined(flag_key=AI, group="ai"),
        FlagDefined(flag_key=PUBLISH, group="campaign"),
        FlagDefined(flag_key="platform.meta.enabled", group="platform"),
        FlagDefined(flag_key="platform.tiktok.enabled", group="platform"),
        SystemDefaultSet(flag_key="platform.meta.enabled", enabled=True),
        PlatformOverrideSet(flag_key="platform.tiktok.enabled", org_id=ORG, platform="tiktok", enabled=False),
        OrgOverrideSet(flag_key=AI, org_id=ORG, enabled=False),
        UserOverrideSet(flag_key=AI, org_id=ORG, user_id="u-pilot", enabled=True),
        OrgOverrideSet(flag_key=PUBLISH, org_id=ORG, enabled=True),
    ])
    return FlagClient.from_state(fold(log.events), org_id=ORG)


class AppClient:
    """Sync requests to an ASGI app in process (httpx's ASGI transport, one event loop per call)."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app

    def request(self, method: str, url: str, **options: object) -> httpx.Response:
        async def send() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://app") as http:
                return await http.request(method, url, **options)  # type: ignore[arg-type]

        return asyncio.run(send())

    def get(self, url: str, **options: object) -> httpx.Response:
        return self.request("GET", url, **options)

    def post(self, url: str, **options: object) -> httpx.Response:
        return self.request("POST", url, **options)


def user_header(request) -> str | None:
    return request.headers.get("x-user")


def test_the_dependency_answers_403_with_the_flag_named(flags: FlagClient) -> None:
    app = FastAPI()

    @app.get("/insights", dependencies=[Depends(require_flag(flags, AI, user=user_header))])
    def insights() -> dict:
        return {"insights": []}

    http = AppClient(app)
    refused = http.get("/insights")
    assert refused.status_code == 403
    assert refused.json() == {"detail": {"error": "feature_disabled", "flag_key": AI,
                                         "detail": f"{AI} is off for this request"}}
    assert http.get("/insights", headers={"x-user": "u-pilot"}).json() == {"insights": []}


def test_the_middleware_guards_path_prefixes_and_leaves_the_rest(flags: FlagClient) -> None:
    app = FastAPI()
    app.add_middleware(FeatureGate, client=flags, prefixes={"/ai/": AI, "/campaigns/": PUBLISH}, user=user_header)

    @app.get("/ai/report")
    def report() -> dict:
        return {"ok": True}

    @app.get("/campaigns/publish")
    def publish() -> dict:
        return {"ok": True}

    @app.get("/health")
    def health() -> dict:
        return {"ok": True}

    http = AppClient(app)
    refused = http.get("/ai/report")
    assert refused.status_code == 403 and refused.json()["error"] == "feature_disabled"
    assert refused.json()["flag_key"] == AI
    assert http.get("/ai/report", headers={"x-user": "u-pilot"}).status_code == 200
    assert http.get("/campaigns/publish").status_code == 200
    assert http.get("/health").status_code == 200


def test_a_job_rechecks_the_flag_when_it_runs_and_is_skipped_with_a_log(
    flags: FlagClient, caplog: pytest.LogCaptureFixture
) -> None:
    ran: list[str] = []

    @skip_unless_enabled(flags, AI, user=lambda report_id, owner: owner)
    def build_report(report_id: str, owner: str) -> str:
        ran.append(report_id)
        return "built"

    @skip_unless_enabled(lambda: flags, PUBLISH)
    async def publish(campaign_id: str) -> str:
        return f"published {campaign_id}"

    with caplog.at_level(logging.INFO, logger="flagsdk.jobs"):
        assert build_report("r1", "u-someone") is SKIPPED
    assert build_report("r2", "u-pilot") == "built"
    assert ran == ["r2"]
    assert "skipping job" in caplog.text and AI in caplog.text and "u-someone" in caplog.text
    assert asyncio.run(publish("c1")) == "published c1"


def test_a_disabled_platforms_webhook_is_acknowledged_and_dropped(
    flags: FlagClient, caplog: pytest.LogCaptureFixture
) -> None:
    app = FastAPI()
    received: list[str] = []

    @app.post("/webhooks/{platform}")
    @platform_webhook(flags)
    async def webhook(platform: str) -> dict:
        received.append(platform)
        return {"status": "processed"}

    http = AppClient(app)
    with caplog.at_level(logging.INFO, logger="flagsdk.webhooks"):
        dropped = http.post("/webhooks/tiktok", json={"event": "ad.updated"})
        unknown = http.post("/webhooks/myspace", json={})
    assert dropped.status_code == 200 and dropped.json() == {"status": "dropped", "platform": "tiktok"}
    assert unknown.status_code == 200 and unknown.json()["status"] == "dropped"
    assert http.post("/webhooks/meta", json={}).json() == {"status": "processed"}
    assert received == ["meta"]
    assert "dropping webhook for tiktok" in caplog.text


def test_platform_helpers(flags: FlagClient) -> None:
    assert is_platform_enabled(flags, "meta") and is_platform_enabled(flags, Platform.META)
    assert not is_platform_enabled(flags, "tiktok")
    assert not is_platform_enabled(flags, "myspace")  # unknown: off, never an exception
    assert enabled_platforms(flags) == [Platform.META]
