"""Typed flags over the real stack: the command service as a process on Postgres (non-superuser role, RLS), its
relay to Kafka, and the fold of what reached the topic.

A string flag is defined with variants over HTTP, an org set to a variant and a platform to a split; the events
are read back from the topic and from the store (the exact stored bytes), and `flagcore` folds both to the
values each subject is served. A refused write leaves the stream as it was. History shows a selection's
previous → new, time travel the variant served then, and a rollback to an instant restores the selection.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from events import Envelope, Variant, canonical_json, decode, from_record
from flagcore import Reason, evaluate, fold
from flagcore.variants import select_variant
from services.infra.settings import Settings
from tests.support.auth import admin_headers
from tests.support.kafka import consume_all
from tests.support.processes import ServiceProcess

pytestmark = pytest.mark.integration

COLOURS = {"blue": "#0000ff", "red": "#ff0000", "green": "#00ff00"}
SPLIT = [{"name": "blue", "weight": 300}, {"name": "green", "weight": 700}]


@pytest.fixture(scope="module")
def service(
    make_settings: Callable[[], Settings], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServiceProcess]:
    settings = make_settings()
    health = f"http://127.0.0.1:{settings.command_port}/healthz"
    running = ServiceProcess("command", settings, Path(tmp_path_factory.mktemp("typed-commands")), health).start()
    yield running
    running.stop()


@pytest.fixture
def http(service: ServiceProcess) -> Iterator[httpx.Client]:
    base = f"http://127.0.0.1:{service.settings.command_port}"
    with httpx.Client(base_url=base, timeout=10, headers=admin_headers(service.settings)) as client:
        yield client


def write(http: httpx.Client, method: str, path: str, status: int = 201, **fields: Any) -> dict[str, Any]:
    response = http.request(method, path, json={"reason": "typed integration", **fields})
    assert response.status_code == status, response.text
    return response.json()


def _stored(http: httpx.Client, key: str) -> list[Envelope]:
    """The flag's events as the store holds them, each checked against its hash by `decode`."""
    body = http.get("/v1/events", params={"flag": key, "limit": 1000}).json()
    return [decode(canonical_json(event)) for event in body["events"]]  # the stored bytes are canonical JSON


def test_a_string_flag_an_orgs_variant_and_a_platforms_split_fold_to_their_values(
    http: httpx.Client, service: ServiceProcess
) -> None:
    key, org = f"it{uuid.uuid4().hex[:8]}.theme", f"org-{uuid.uuid4().hex[:8]}"
    defined = write(http, "POST", "/v1/flags", key=key, group="checkout", type="string", variants=COLOURS,
                    default_variant="blue", off_variant="red")  # fmt: skip
    assert defined["events"][0]["new"]["values"] == COLOURS
    write(http, "PUT", f"/v1/flags/{key}/system", enabled=True)
    org_set = write(http, "PUT", f"/v1/orgs/{org}/flags/{key}", variant="green")
    assert [e["type"] for e in org_set["events"]] == ["VariantSelected"]
    write(http, "PUT", f"/v1/orgs/{org}/platforms/meta/flags/{key}", split=SPLIT)
    refused = http.put(f"/v1/orgs/{org}/platforms/meta/flags/{key}",
                       json={"reason": "r", "enabled": True, "split": [{"name": "pink", "weight": 1000}]})
    assert (refused.status_code, refused.json()["field"]) == (422, "split.0.name")

    stored = _stored(http, key)
    assert [e.type for e in stored] == ["FlagDefined", "SystemDefaultSet", "VariantSelected", "VariantSelected"]
    total = len(http.get("/v1/events", params={"limit": 1000}).json()["events"])
    records = asyncio.run(consume_all(service.settings, total))
    published = sorted(
        (e for e in (from_record(r.value, r.headers) for r in records) if e.flag_key == key), key=lambda e: e.sequence
    )
    assert [e.event_id for e in published] == [e.event_id for e in stored]  # what the topic carries is the log

    for events in (published, stored):
        state = fold(events)
        tenant = state.tenant(org)
        elsewhere = evaluate(state.catalog, state.tenant("another-org"), key, user_id="u-1")
        assert (elsewhere.value, elsewhere.variant, elsewhere.reason) == ("#0000ff", "blue", Reason.STATIC)
        at_org = evaluate(state.catalog, tenant, key, platform="google", user_id="u-1")
        assert (at_org.value, at_org.variant, at_org.reason) == ("#00ff00", "green", Reason.TARGETING_MATCH)
        arms = tuple(Variant(**arm) for arm in SPLIT)
        seen = set()
        for user in (f"user-{i}" for i in range(60)):
            e = evaluate(state.catalog, tenant, key, platform="meta", user_id=user)
            chosen = select_variant(key, user, arms)
            assert chosen is not None and (e.variant, e.reason) == (chosen.name, Reason.SPLIT)
            assert e.value == COLOURS[chosen.name]
            seen.add(e.variant)
        assert seen == {"blue", "green"}


def test_a_bad_typed_definition_writes_nothing(http: httpx.Client) -> None:
    key = f"it{uuid.uuid4().hex[:8]}.limit"
    refused = http.post("/v1/flags", json={"reason": "r", "key": key, "group": "g", "type": "integer",
                                           "variants": {"small": 10, "big": 1.5}, "default_variant": "small",
                                           "off_variant": "small"})  # fmt: skip
    assert (refused.status_code, refused.json()["field"]) == (422, "variants.big")
    assert http.get(f"/v1/streams/flag/{key}").json() == {"stream": f"flag/{key}", "version": 0, "value": None}


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def test_history_time_travel_and_rollback_show_and_restore_a_selection(http: httpx.Client) -> None:
    key, org = f"it{uuid.uuid4().hex[:8]}.theme", f"org-{uuid.uuid4().hex[:8]}"
    write(http, "POST", "/v1/flags", key=key, group="checkout", type="string", variants=COLOURS,
          default_variant="blue", off_variant="red")  # fmt: skip
    write(http, "PUT", f"/v1/orgs/{org}/flags/{key}", enabled=True, variant="green")
    time.sleep(0.05)
    green_at = datetime.now(UTC)
    time.sleep(0.05)
    write(http, "PUT", f"/v1/orgs/{org}/flags/{key}", split=SPLIT)

    entries = http.get("/v1/history", params={"org": org, "flag": key}).json()["entries"]
    selections = [(e["previous"], e["new"]) for e in entries if e["type"] == "VariantSelected"]
    on = {"enabled": True, "rollout_percentage": None}
    assert sorted(selections, key=lambda pair: "split" in (pair[1] or {})) == [
        (on, on | {"variant": "green"}),
        (on | {"variant": "green"}, on | {"split": SPLIT}),
    ]

    then = http.get("/v1/audit/at", params={"org": org, "at": _iso(green_at), "flag": key, "user": "u-1"})
    assert then.status_code == 200, then.text
    (view,) = then.json()["flags"]
    assert (view["value"], view["variant"], view["settings"]["org"]["variant"]) == ("#00ff00", "green", "green")
    now = http.get("/v1/audit/at", params={"org": org, "at": _iso(datetime.now(UTC)), "flag": key, "user": "u-1"})
    (view,) = now.json()["flags"]
    chosen = select_variant(key, "u-1", tuple(Variant(**arm) for arm in SPLIT))
    assert chosen is not None and (view["variant"], view["reason"]) == (chosen.name, "SPLIT")
    assert view["settings"]["org"]["split"] == SPLIT

    back = write(http, "POST", f"/v1/orgs/{org}/rollback", at=_iso(green_at), flag_key=key)
    [stream] = back["streams"]
    assert [(e["type"], e["new"]) for e in stream["events"]] == [
        ("VariantSelected", {"enabled": True, "rollout_percentage": None, "variant": "green"})
    ]  # fmt: skip
    head = http.get(f"/v1/streams/org/{org}/flag/{key}").json()
    assert head["value"] == {"enabled": True, "rollout_percentage": None, "variant": "green"}
    again = write(http, "POST", f"/v1/orgs/{org}/rollback", status=200, at=_iso(green_at), flag_key=key)
    assert again["changed"] is False
