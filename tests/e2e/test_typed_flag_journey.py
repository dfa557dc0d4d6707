"""A typed flag's whole journey, as a user makes it: the command API → the relay → Kafka → the projector →
the query service's native API and OFREP, and the real OpenFeature OFREP provider.

Defined over HTTP with string variants, its system default served a variant, an org given a 50/50
split and one user a variant of their own; every reader answers what the pure core answers over the
log the command service wrote, and a change made afterwards reaches them.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from openfeature import api
from openfeature.contrib.provider.ofrep import OFREPProvider
from openfeature.evaluation_context import EvaluationContext
from openfeature.flag_evaluation import ErrorCode

from services.infra.settings import Settings
from tests.support.stack import Stack, start_stack

pytestmark = pytest.mark.integration

KEY = "journey.theme"
THEMES = {"blue": "#00f", "dark": "#000", "light": "#fff"}


@pytest.fixture(scope="module")
def stack(make_settings: Callable[[], Settings], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    running = start_stack(make_settings(), tmp_path_factory.mktemp("typed-journey"))
    yield running
    running.stop()


def _write(http: httpx.Client, method: str, path: str, **body: Any) -> dict[str, Any]:
    answer = http.request(method, path, json={"reason": "typed journey", **body})
    assert answer.status_code in (200, 201), answer.text
    return answer.json()  # type: ignore[no-any-return]


def _until(probe: Callable[[], bool], what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not probe():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def test_a_typed_flag_defined_over_http_is_answered_typed_by_every_reader(stack: Stack) -> None:
    org = f"j-{uuid.uuid4().hex[:8]}"
    c, q = stack.command_url, stack.query_url
    with httpx.Client(base_url=c, timeout=10, headers=stack.headers) as http:
        _write(http, "POST", "/v1/flags", key=KEY, group="journey", type="string", variants=THEMES,
               default_variant="light", off_variant="dark")
        _write(http, "PUT", f"/v1/flags/{KEY}/system", enabled=True, variant="blue")
        _write(http, "PUT", f"/v1/orgs/{org}/flags/{KEY}", enabled=True,
               split=[{"name": "blue", "weight": 500}, {"name": "dark", "weight": 500}])
        _write(http, "PUT", f"/v1/orgs/{org}/users/vip/flags/{KEY}", enabled=True, variant="light")
        made = _write(http, "POST", "/v1/keys", name="journey", role="evaluator", org_id=org)
    evaluator = {"Authorization": f"Bearer {made['key']}"}

    def native(user: str) -> dict[str, Any]:
        return httpx.get(f"{q}/v1/orgs/{org}/flags/{KEY}", params={"user": user}, headers=evaluator,
                         timeout=5).json()  # type: ignore[no-any-return]

    _until(lambda: native("vip").get("value") == "#fff", "the user's variant projected and answered")
    users = [f"u-{i}" for i in range(40)]
    for user in users:  # the org's split: some users blue, some dark, each where Unleash's variant hash puts them
        answer = native(user)
        assert answer["value"] in ("#00f", "#000") and answer["variant"] in ("blue", "dark"), answer
        assert THEMES[answer["variant"]] == answer["value"]
        assert answer["level"] == "org"
    assert {native(u)["variant"] for u in users} == {"blue", "dark"}
    assert native("vip")["variant"] == "light" and native("vip")["level"] == "user"

    ofrep = httpx.post(f"{q}/ofrep/v1/evaluate/flags/{KEY}", json={"context": {"targetingKey": "vip"}},
                       headers=evaluator, timeout=5).json()
    assert (ofrep["value"], ofrep["variant"]) == ("#fff", "light")
    bulk = httpx.post(f"{q}/ofrep/v1/evaluate/flags", json={"context": {"targetingKey": users[0]}},
                      headers=evaluator, timeout=5).json()
    [mine] = [f for f in bulk["flags"] if f["key"] == KEY]
    assert mine["value"] == native(users[0])["value"]

    domain = f"journey-{org}"
    api.set_provider(OFREPProvider(base_url=q, headers_factory=lambda: evaluator), domain)
    client = api.get_client(domain)
    vip = EvaluationContext(targeting_key="vip")
    resolved = client.get_string_details(KEY, "fallback", vip)
    assert (resolved.value, resolved.variant) == ("#fff", "light")
    wrong = client.get_boolean_details(KEY, False, vip)  # the product's code asked the wrong type: its default
    assert wrong.error_code == ErrorCode.TYPE_MISMATCH and wrong.value is False

    with httpx.Client(base_url=c, timeout=10, headers=stack.headers) as http:  # a change reaches the readers
        _write(http, "PUT", f"/v1/orgs/{org}/flags/{KEY}", enabled=True, variant="dark")
    _until(lambda: native(users[0])["variant"] == "dark", "the org's new variant answered")
    assert all(native(u)["value"] == "#000" for u in users[:5])
