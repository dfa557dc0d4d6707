"""The in-process SDK against the real stack: bootstrap from the query service, then the topic."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry

from events import Level, TargetingRulesSet, to_record
from flagcore import Reason
from flagsdk import BootstrapError, FlagClient, Staleness
from services.infra.settings import Settings
from tests.support.auth import admin_headers
from tests.support.factories import LogBuilder
from tests.support.kafka import produce
from tests.support.sdk import sdk_settings
from tests.support.servers import Servers
from tests.support.stack import Stack, start_stack

pytestmark = pytest.mark.integration

FLAG = "ai.insights.enabled"
OTHER = "campaign.publishing.enabled"
CONTEXTS = [
    {},
    {"platform": "tiktok"},
    {"platform": "meta"},
    {"user": "u-vip"},
    {"platform": "tiktok", "user": "u-vip"},
    *({"user": f"u-{i}"} for i in range(40)),
    *({"platform": "google", "user": f"u-{i}"} for i in range(10)),
]


def wait_for(probe: Callable[[], bool], timeout: float = 15.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if probe():
            return
        time.sleep(0.01)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@pytest.fixture(scope="module")
def sdk_stack(make_settings: Callable[[], Settings], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    running = start_stack(make_settings(), tmp_path_factory.mktemp("sdk"))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def admin(sdk_stack: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sdk_stack.command_url, timeout=10, headers=admin_headers(sdk_stack.settings)) as http:
        for key in (FLAG, OTHER):
            response = http.post("/v1/flags", json={"key": key, "group": key.split(".")[0], "reason": "sdk tests"})
            assert response.status_code == 201, response.text
        yield http


def change(http: httpx.Client, path: str, **body: object) -> dict:
    response = http.put(path, json={"reason": "sdk test", **body})
    assert response.status_code in (200, 201), response.text
    return response.json()


def evaluator_key(http: httpx.Client, org: str) -> str:
    body = {"name": f"sdk {org}", "role": "evaluator", "org_id": org, "reason": "sdk test"}
    response = http.post("/v1/keys", json=body)
    assert response.status_code == 201, response.text
    return str(response.json()["key"])


def seed(http: httpx.Client, org: str) -> None:
    """Every level set somewhere, and another org's changes on the same topic."""
    change(http, f"/v1/flags/{OTHER}/system", enabled=True)
    change(http, f"/v1/orgs/{org}/flags/{FLAG}", enabled=True, rollout_percentage=50)
    change(http, f"/v1/orgs/{org}/platforms/tiktok/flags/{FLAG}", enabled=False)
    change(http, f"/v1/orgs/{org}/users/u-vip/flags/{FLAG}", enabled=True)
    change(http, f"/v1/orgs/{org}/flags/{OTHER}", enabled=False)
    change(http, f"/v1/orgs/{org}-other/flags/{FLAG}", enabled=True)


def query_answers(stack: Stack, key: str, org: str, flag: str) -> list[tuple[bool, str, str | None]]:
    answers = []
    with httpx.Client(timeout=10, headers={"Authorization": f"Bearer {key}"}) as http:
        for context in CONTEXTS:
            body = http.get(f"{stack.query_url}/v1/orgs/{org}/flags/{flag}", params=context).json()
            answers.append((body["value"], body["reason"], body["level"]))
    return answers


def sdk_answers(client: FlagClient, flag: str) -> list[tuple[bool, str, str | None]]:
    answers = []
    for context in CONTEXTS:
        r = client.evaluate(flag, **context)
        assert client.is_enabled(flag, **context) is r.value
        answers.append((r.value, r.reason.value, None if r.level is None else r.level.value))
    return answers


def client_for(stack: Stack, key: str, org: str, **options: object) -> FlagClient:
    settings = sdk_settings(stack.settings)
    return FlagClient.from_settings(settings, api_key=key, org_id=org, **options)  # type: ignore[arg-type]


def projected(stack: Stack, key: str, org: str, flag: str, level: str, value: bool) -> Callable[[], bool]:
    def probe() -> bool:
        body = httpx.get(f"{stack.query_url}/v1/orgs/{org}/flags/{flag}", headers={"Authorization": f"Bearer {key}"},
                         params={"user": "u-1"}).json()
        return body.get("level") == level and body.get("value") is value

    return probe


def test_bootstrap_then_stream_agree_with_the_query_service(sdk_stack: Stack, admin: httpx.Client, org_id: str) -> None:
    key = evaluator_key(admin, org_id)
    seed(admin, org_id)
    wait_for(projected(sdk_stack, key, org_id, OTHER, "org", False), what="the seed projected")
    with client_for(sdk_stack, key, org_id) as client:
        assert client.status().source == "query"
        assert client.wait_until_current()
        for flag in (FLAG, OTHER):
            assert sdk_answers(client, flag) == query_answers(sdk_stack, key, org_id, flag)
        assert {p.value for p in client.enabled_platforms()} == set()

        change(admin, f"/v1/orgs/{org_id}/flags/{FLAG}", rollout_percentage=None)  # enabled for everyone
        change(admin, f"/v1/orgs/{org_id}-other/flags/{OTHER}", enabled=True)  # noise: another org
        wait_for(lambda: client.is_enabled(FLAG, user="u-1") and client.evaluate(FLAG).reason.value != "SPLIT",
                 what="the change in the SDK")
        assert client.wait_until_current()
        wait_for(lambda: sdk_answers(client, FLAG) == query_answers(sdk_stack, key, org_id, FLAG),
                 what="the query service to agree")
        status = client.status()
        assert status.dropped >= 1  # the other org's change never reached the fold
        assert status.duplicates == 0 and status.refused == 0
        assert status.last_event_age is not None and status.last_event_age < 60


def test_resume_after_the_kafka_connection_drops_misses_and_repeats_nothing(
    sdk_stack: Stack, admin: httpx.Client, org_id: str
) -> None:
    key = evaluator_key(admin, org_id)
    change(admin, f"/v1/orgs/{org_id}/flags/{FLAG}", enabled=False)
    wait_for(projected(sdk_stack, key, org_id, FLAG, "org", False), what="the first change projected")
    with client_for(sdk_stack, key, org_id, reconnect_delay=1.5) as client:
        assert client.wait_until_current()
        before = client.status()
        client.reconnect()
        assert not client.status().connected
        for i in range(10):  # made while the SDK is away
            change(admin, f"/v1/orgs/{org_id}/users/u-{i}/flags/{FLAG}", enabled=True)
        change(admin, f"/v1/orgs/{org_id}/flags/{FLAG}", rollout_percentage=30)
        # the relay publishes asynchronously: wait for the last change, not only for "current"
        wait_for(lambda: client.status().applied - before.applied >= 11, what="the changes made while away")
        assert client.wait_until_current()
        after = client.status()
        assert after.reconnects == before.reconnects + 1
        assert after.applied - before.applied == 11  # each change folded once …
        assert after.duplicates == before.duplicates == 0  # … and none delivered twice
        assert all(client.is_enabled(FLAG, user=f"u-{i}") for i in range(10))
        source = client.evaluate(FLAG).evaluation.source
        assert source is not None and source.version == 2  # the org stream's second event, the rollout
        wait_for(lambda: sdk_answers(client, FLAG) == query_answers(sdk_stack, key, org_id, FLAG),
                 what="the query service to agree")


def test_staleness_is_zero_while_current_and_grows_while_away(
    sdk_stack: Stack, admin: httpx.Client, org_id: str
) -> None:
    key = evaluator_key(admin, org_id)
    change(admin, f"/v1/orgs/{org_id}/flags/{FLAG}", enabled=True)
    wait_for(projected(sdk_stack, key, org_id, FLAG, "org", True), what="projection")
    registry = CollectorRegistry()
    with client_for(sdk_stack, key, org_id, reconnect_delay=1.0, metrics_registry=registry) as client:
        assert client.wait_until_current()
        assert client.staleness() == Staleness(0.0, 0)
        assert registry.get_sample_value("flagstream_sdk_staleness_seconds", {"org": org_id}) == 0
        assert registry.get_sample_value("flagstream_sdk_lag_records", {"org": org_id}) == 0
        client.reconnect()
        time.sleep(0.2)
        away = client.staleness()
        assert 0.2 <= away.seconds < 5  # since the last fetch that left nothing to fold (at most a poll ago)
        assert registry.get_sample_value("flagstream_sdk_staleness_seconds", {"org": org_id}) >= away.seconds
        assert client.wait_until_current()
        wait_for(lambda: client.staleness().seconds == 0, what="staleness back to 0")


def test_serves_last_state_with_kafka_unreachable(sdk_stack: Stack, admin: httpx.Client, org_id: str) -> None:
    key = evaluator_key(admin, org_id)
    change(admin, f"/v1/orgs/{org_id}/flags/{FLAG}", enabled=True)
    wait_for(projected(sdk_stack, key, org_id, FLAG, "org", True), what="projection")
    nowhere = {"bootstrap_servers": "127.0.0.1:9"}  # nothing listens: every connection is refused
    query_url = f"http://127.0.0.1:{sdk_stack.settings.query_port}"
    with FlagClient(query_url=query_url, api_key=key, org_id=org_id, kafka=nowhere) as client:
        assert client.is_enabled(FLAG, user="u-1")
        status = client.status()
        assert not status.connected and not status.current and status.since_contact is None
        stale = client.staleness()
        time.sleep(0.05)
        assert stale.records is None and client.staleness().seconds > stale.seconds


def test_serves_last_state_with_the_query_service_stopped(
    sdk_stack: Stack, admin: httpx.Client, org_id: str, tmp_path: Path
) -> None:
    key = evaluator_key(admin, org_id)
    change(admin, f"/v1/orgs/{org_id}/flags/{FLAG}", enabled=True)
    wait_for(projected(sdk_stack, key, org_id, FLAG, "org", True), what="projection")
    snapshot = tmp_path / "acme.json"
    with client_for(sdk_stack, key, org_id, snapshot_path=snapshot) as client:
        assert snapshot.exists()
        sdk_stack.query.stop()
        try:
            assert client.is_enabled(FLAG)
            change(admin, f"/v1/orgs/{org_id}/flags/{FLAG}", enabled=False)  # Kafka still carries changes
            wait_for(lambda: not client.is_enabled(FLAG), what="the change over Kafka alone")
            with client_for(sdk_stack, key, org_id, snapshot_path=snapshot) as restarted:
                assert restarted.status().source == "snapshot"
                assert restarted.wait_until_current()  # caught up from the snapshot's offsets
                assert not restarted.is_enabled(FLAG)
            with pytest.raises(BootstrapError):
                client_for(sdk_stack, key, org_id).start()  # no query service and no snapshot
        finally:
            sdk_stack.query.start()


def test_a_key_of_another_org_cannot_bootstrap(sdk_stack: Stack, admin: httpx.Client, org_id: str) -> None:
    key = evaluator_key(admin, f"{org_id}-x")
    with pytest.raises(BootstrapError, match="403"):
        client_for(sdk_stack, key, org_id).start()


def test_follows_the_topic_over_sasl_scram_and_serves_on_with_a_wrong_password(
    sdk_stack: Stack, admin: httpx.Client, org_id: str, servers: Servers
) -> None:
    assert servers.kafka_sasl_bootstrap, "the servers have no SASL/SCRAM listener (see test_transport_security.py)"
    key = evaluator_key(admin, org_id)
    query_url = f"http://127.0.0.1:{sdk_stack.settings.query_port}"
    scram = {"bootstrap_servers": servers.kafka_sasl_bootstrap, "security_protocol": "SASL_PLAINTEXT",
             "sasl_mechanism": "SCRAM-SHA-256", "sasl_plain_username": servers.kafka_sasl_username,
             "sasl_plain_password": servers.kafka_sasl_password}
    with FlagClient(query_url=query_url, api_key=key, org_id=org_id, kafka=scram) as client, FlagClient(
        query_url=query_url, api_key=key, org_id=org_id, kafka={**scram, "sasl_plain_password": "wrong"}
    ) as refused:
        change(admin, f"/v1/orgs/{org_id}/flags/{FLAG}", enabled=True)
        wait_for(lambda: client.is_enabled(FLAG), what="the change over SCRAM")
        assert client.status().connected
        assert not refused.status().connected and not refused.is_enabled(FLAG)  # its last state: nothing set


RULED = "checkout.rules.enabled"  # a flag of its own: the rule below is published to the log directly


def test_a_targeting_rule_published_to_the_log_changes_the_answer_for_a_matching_context_only(
    sdk_stack: Stack, admin: httpx.Client, org_id: str
) -> None:
    response = admin.post("/v1/flags", json={"key": RULED, "group": "checkout", "reason": "sdk tests"})
    assert response.status_code in (201, 409), response.text  # 409: defined by an earlier run of this module
    key = evaluator_key(admin, org_id)
    change(admin, f"/v1/orgs/{org_id}/flags/{RULED}", enabled=False)
    wait_for(projected(sdk_stack, key, org_id, RULED, "org", False), what="the org's setting projected")
    enterprise = {"plan": "enterprise", "email": "ana@acme.com", "app_version": "2.4.0"}
    others = [None, {"plan": "free", "email": "bo@acme.com"}, {"plan": "Enterprise"}, {"email": "enterprise"}]
    with client_for(sdk_stack, key, org_id) as client:
        assert client.wait_until_current()
        before = [client.evaluate(RULED, user="u-1", context=c) for c in others]
        assert client.is_enabled(RULED, user="u-1", context=enterprise) is False
        # No command route sets rules yet: sealed as the command store seals, then produced as the relay does.
        rules = TargetingRulesSet.model_validate({
            "flag_key": RULED, "level": "org", "org_id": org_id,
            "rules": [{"id": "enterprise", "variant": "on", "conditions": [
                {"attribute": "plan", "operator": "equals", "values": ["enterprise"]},
                {"attribute": "app_version", "operator": "semver_gte", "values": ["2.0.0"]},
            ]}],
        })  # fmt: skip
        sealed = LogBuilder(datetime.now(UTC)).append(rules, reason="enterprise customers first")
        assert sealed is not None
        applied = client.status().applied
        asyncio.run(produce(sdk_stack.settings, [to_record(sealed)]))
        wait_for(lambda: client.is_enabled(RULED, user="u-1", context=enterprise), what="the rule in the SDK")
        matched = client.evaluate(RULED, user="u-1", context=enterprise)
        assert (matched.value, matched.reason, matched.rule, matched.variant) == (
            True,
            Reason.TARGETING_MATCH,
            "enterprise",
            "on",
        )
        assert matched.level is Level.ORG and matched.evaluation.source is not None
        assert matched.evaluation.source.event_id == str(sealed.event_id)
        assert [client.evaluate(RULED, user="u-1", context=c) for c in others] == before  # nobody else moved
        assert not any(client.is_enabled(RULED, user=u, context=c) for u in ("u-1", "u-2") for c in others)
        assert client.is_enabled(RULED, user="u-2", context=enterprise) is True
        status = client.status()
        assert status.applied == applied + 1 and status.refused == 0 and status.duplicates == 0
