"""Operational alerts on the real services, told to real receivers on 127.0.0.1 (allowed by the guard).

The command service and the notifier run as processes; subscriptions are created through the command
API with `alert.*` among their event types. A kill switch is engaged through the command API; a dead
letter is made by the real projector from a record it cannot read; the projector's lag is the topic's
end against `projector_offsets` (here written as the projector writes it, the projector not running, so
the lag is under the test's control). Signatures are checked with the `standardwebhooks` verifier.
"""

from __future__ import annotations

import asyncio
import base64
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from standardwebhooks import Webhook

from events import Record
from services.infra.settings import Settings
from tests.support.auth import admin_key
from tests.support.kafka import produce
from tests.support.processes import ServiceProcess
from tests.support.receivers import Receiver, verifying
from tests.support.tenants import database_url

pytestmark = pytest.mark.integration

SECRET = "whsec_" + base64.b64encode(b"alerts webhook secret, 32 bytes!").decode()
ORG = "acme"


@dataclass
class Services:
    settings: Settings
    command_url: str
    notifier_url: str
    log_dir: Path

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {admin_key(self.settings)}"}


@pytest.fixture
def services(make_settings: Callable[[], Settings], tmp_path: Path) -> Iterator[Services]:
    settings = make_settings().model_copy(update={
        "notifier_allow_hosts": ["127.0.0.1"],
        "notifier_backoff_base": 0.05,
        "notifier_backoff_cap": 0.1,
        "notifier_max_attempts": 3,
        "notifier_alert_lag_seconds": 1.5,
        "notifier_lag_interval": 0.2,
    })  # fmt: skip
    base = "http://127.0.0.1"
    command = ServiceProcess("command", settings, tmp_path, f"{base}:{settings.command_port}/healthz")
    notifier = ServiceProcess("notifier", settings, tmp_path, f"{base}:{settings.notifier_port}/healthz")
    try:
        command.start()
        notifier.start()
        yield Services(settings, f"{base}:{settings.command_port}", f"{base}:{settings.notifier_port}", tmp_path)
    finally:
        notifier.stop()
        command.stop()


async def call(s: Services, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    async with httpx.AsyncClient(headers=s.headers, timeout=10) as http:
        answer = await http.request(method, f"{s.command_url}{path}", json=body)
    assert answer.status_code in (200, 201), answer.text
    found: dict[str, Any] = answer.json()
    return found


async def subscribe(s: Services, name: str, url: str, event_types: list[str], org: str | None = None) -> str:
    path = "/v1/subscriptions" if org is None else f"/v1/orgs/{org}/subscriptions"
    made = await call(s, "POST", path, {
        "name": name, "reason": "alerts test", "event_types": event_types,
        "destination": {"kind": "webhook", "url": url, "secret": SECRET},
    })  # fmt: skip
    return str(made["id"])


async def ready(s: Services, timeout: float = 30.0) -> None:
    """The notifier has folded the log (so it knows the subscriptions just made)."""
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(timeout=5) as http:
        while time.monotonic() < deadline:
            if (await http.get(f"{s.notifier_url}/readyz")).status_code == 200:
                return
            await asyncio.sleep(0.1)
    raise AssertionError("the notifier never became ready")


async def bodies(receiver: Receiver, count: int, *, timeout: float = 20.0) -> list[dict[str, Any]]:
    """The first `count` deliveries the receiver accepted, verified with the subscription's secret."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        accepted = [r for r, status in zip(receiver.received, receiver.answered, strict=False) if 200 <= status < 300]
        if len(accepted) >= count:
            found = []
            for request in accepted:
                body: dict[str, Any] = Webhook(SECRET).verify(request.body, request.headers)
                assert request.headers["webhook-id"] == body["id"]
                found.append(body)
            return found
        await asyncio.sleep(0.05)
    raise AssertionError(f"{count} deliveries expected, got {[orjson.loads(r.body) for r in receiver.received]}")


async def test_engaging_the_kill_switch_through_the_command_api_alerts_the_opted_in_webhooks(
    services: Services
) -> None:
    s = services
    flag = f"ops.k{uuid.uuid4().hex[:8]}"
    await call(s, "POST", "/v1/flags", {"key": flag, "group": "ops", "kind": "ops", "reason": "alerts test"})
    async with Receiver(verifying(SECRET)) as system, Receiver(verifying(SECRET)) as org:
        await subscribe(s, "ops-alerts", system.url, ["alert.kill_switch"])
        await subscribe(s, "acme-alerts", org.url, ["alert.kill_switch"], org=ORG)
        await ready(s)
        engaged = await call(s, "POST", f"/v1/flags/{flag}/kill-switch", {"reason": "payments failing"})
        event_id = engaged["events"][0]["event_id"]
        [alert] = await bodies(system, 1)
        assert alert["type"] == "flagstream.alert.kill_switch.engaged" and alert["subject"] == flag
        data = alert["data"]
        assert (data["kind"], data["flag_key"], data["engaged"], data["event_id"], data["reason"]) == (
            "alert.kill_switch", flag, True, event_id, "payments failing")
        assert alert["id"] != event_id  # the alert's own id, not the change's
        [for_org] = await bodies(org, 1)  # a kill switch holds in every org: the org's opted-in subscription hears it
        assert for_org["id"] == alert["id"]
        await call(s, "DELETE", f"/v1/flags/{flag}/kill-switch", {"reason": "payments back"})
        [_, released] = await bodies(system, 2)
        assert released["type"] == "flagstream.alert.kill_switch.released" and released["data"]["engaged"] is False
        assert system.answered == [204, 204]  # its own verifier accepted both; no flag change was sent to it


async def test_a_dead_letter_of_the_projector_produces_an_alert(services: Services) -> None:
    s = services
    async with Receiver(verifying(SECRET)) as receiver:
        await subscribe(s, "dlq-alerts", receiver.url, ["alert.dead_letter"])
        await ready(s)
        headers = [("ce_id", str(uuid.uuid4()).encode()), ("ce_type", b"OrgOverrideSet")]
        await produce(s.settings, [Record(b"org/acme", b"this is not json", headers)])
        projector = ServiceProcess("projector", s.settings, s.log_dir).start()
        try:
            [alert] = await bodies(receiver, 1, timeout=30)
        finally:
            projector.stop()
        assert alert["type"] == "flagstream.alert.dead_letters"
        data = alert["data"]
        assert (data["topic"], data["count"]) == (s.settings.dead_letter_topic, 1)
        [letter] = data["letters"]
        assert (letter["source_topic"], letter["source_offset"]) == (s.settings.topic, 0)
        assert letter["reason"].startswith("ce_specversion")  # the projector's own reason, passed on
        await asyncio.sleep(1.0)
        assert len(receiver.received) == 1  # one dead letter, one alert


async def test_projector_lag_over_the_threshold_alerts_once_and_its_recovery_once(services: Services) -> None:
    s = services
    async with Receiver(verifying(SECRET)) as receiver:
        await subscribe(s, "lag-alerts", receiver.url, ["alert.projector_lag"])
        await ready(s)
        # The projector has applied nothing of a topic that holds the subscription's event: behind.
        [high] = await bodies(receiver, 1, timeout=20)
        assert high["type"] == "flagstream.alert.projector_lag.high"
        assert high["data"]["consumer_group"] == s.settings.projector_group
        partitions = high["data"]["partitions"].values()
        assert max(float(v["seconds"]) for v in partitions) > 1.5 and sum(v["records"] for v in partitions) >= 1
        await asyncio.sleep(1.0)
        assert len(receiver.received) == 1  # still behind: not told again
        await catch_up(s)  # as the projector records what it applied
        [_, recovered] = await bodies(receiver, 2, timeout=20)
        assert recovered["type"] == "flagstream.alert.projector_lag.recovered"
        assert recovered["data"]["high_alert_id"] == high["id"]
        await asyncio.sleep(1.0)
        assert len(receiver.received) == 2  # caught up: nothing more


async def catch_up(s: Services) -> None:
    """Write each partition's end offset as the projector's next offset (what the projector does per batch)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=s.settings.kafka_bootstrap)
    await consumer.start()
    try:
        tps = [TopicPartition(s.settings.topic, p) for p in range(s.settings.topic_partitions)]
        ends = await consumer.end_offsets(tps)
    finally:
        await consumer.stop()
    conn = await asyncpg.connect(database_url(s.settings))  # the projector's own writes, as the admin
    try:
        await conn.executemany(
            "INSERT INTO projector_offsets (consumer_group, topic, partition, next_offset) VALUES ($1, $2, $3, $4)",
            [(s.settings.projector_group, tp.topic, tp.partition, offset) for tp, offset in ends.items()],
        )
    finally:
        await conn.close()
