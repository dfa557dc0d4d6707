"""Schemathesis against the OpenAPI documents of the running command and query services.

Both services run as processes (`start_stack`) on a database of their own, with a
few flags defined and overridden first so that generated requests meet real data
(the documents' examples name `acme` and `ai.insights.enabled`). Every request
carries the database's system-admin key, so the fuzzing reaches the handlers
rather than stopping at 401.

What must hold, for the documents' examples and for generated valid (positive)
and invalid (negative) inputs alike: no 5xx (`not_a_server_error`), and every
response whose status the document declares matches the schema declared for it
(`response_schema_conformance`). Every operation of both documents is exercised
but one: OFREP's change stream (`GET /ofrep/v1/changes`), whose 200 is an event
stream that never ends, so no client call of schemathesis could read it; its
refusals are cells of the authorization matrix and its answers are tested in
tests/integration/test_ofrep_stream.py. Examples per operation and mode are bounded
(`FLAGS_FUZZ_EXAMPLES`, default 20) so that the module runs in well under two
minutes on two cores; raise it for a longer hunt.

Each operation is driven through `APIOperation.as_strategy` with Hypothesis
rather than `schemathesis.pytest.from_fixture`: the lazy pytest loader of
schemathesis 4 sets `request.node._nodeid`, which pytest 9.2 no longer has.
Failures are collected over all operations and reported together, each with the
curl command that reproduces it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable

from services.infra.settings import Settings
from tests.support.stack import Stack, start_stack

pytestmark = pytest.mark.integration

MAX_EXAMPLES = int(os.environ.get("FLAGS_FUZZ_EXAMPLES", "20"))
CHECKS = {"enabled": False, "not_a_server_error": {"enabled": True}, "response_schema_conformance": {"enabled": True}}
ORG = "acme"  # the org the query document gives as its example
FLAGS = ("ai.insights.enabled", "fuzz.seeded.flag")
ENDLESS = {"/ofrep/v1/changes"}  # answers that stream until the client leaves (see above)


def _seed(stack: Stack) -> None:
    """A few flags with overrides at every level, projected before the fuzzing starts."""
    key = FLAGS[0]
    with httpx.Client(base_url=stack.command_url, headers=stack.headers, timeout=10) as client:
        for flag in FLAGS:
            r = client.post("/v1/flags", json={"key": flag, "group": "fuzz", "reason": "fuzz seed"})
            assert r.status_code == 201, r.text
            r = client.put(f"/v1/flags/{flag}/system", json={"enabled": False, "reason": "fuzz seed"})
            assert r.status_code == 201, r.text
        for path, body in [
            (f"/v1/orgs/{ORG}/flags/{key}", {"enabled": True, "rollout_percentage": 50}),
            (f"/v1/orgs/{ORG}/platforms/meta/flags/{key}", {"enabled": False}),
            (f"/v1/orgs/{ORG}/users/u-1/flags/{key}", {"enabled": True}),
        ]:
            r = client.put(path, json={**body, "reason": "fuzz seed"})
            assert r.status_code == 201, r.text
    deadline = time.monotonic() + 30
    with httpx.Client(base_url=stack.query_url, headers=stack.headers, timeout=10) as client:
        while True:
            r = client.get(f"/v1/orgs/{ORG}/flags/{key}", params={"user": "u-1"})
            if r.status_code == 200 and r.json()["level"] == "user":
                return
            assert time.monotonic() < deadline, f"seed data not projected: {r.status_code} {r.text}"
            time.sleep(0.2)


@pytest.fixture(scope="module")
def fuzz_stack(make_settings: Callable[[], Settings], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    stack = start_stack(make_settings(), tmp_path_factory.mktemp("fuzz-logs"))
    try:
        _seed(stack)
        yield stack
    finally:
        stack.stop()


def _fuzz(base_url: str, headers: dict[str, str]) -> tuple[int, list[str]]:
    """Run every operation of the document at `base_url`; (operations run, failure reports)."""
    config = schemathesis.Config.from_dict({"headers": headers, "checks": CHECKS})
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json", config=config, timeout=10)
    failures: list[str] = []
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()  # an operation the document cannot describe fails the test here
        if operation.path in ENDLESS:
            continue
        operations += 1
        strategies = [
            ("examples", *schema.get_strategies_from_examples(operation)),
            ("positive", operation.as_strategy(schemathesis.GenerationMode.POSITIVE)),
            ("negative", operation.as_strategy(schemathesis.GenerationMode.NEGATIVE)),
        ]
        for name, *alternatives in strategies:
            if not alternatives:
                continue
            try:
                _run(st.one_of(alternatives), headers)
            except Unsatisfiable:
                assert name == "negative", operation.label  # no input to make invalid (e.g. GET /healthz)
            except (Exception, BaseExceptionGroup) as exc:  # schemathesis raises a BaseExceptionGroup
                failures.append(f"{operation.label} ({name}):\n{exc}")  # go on with the other operations
    return operations, failures


def _run(strategy: st.SearchStrategy[schemathesis.Case], headers: dict[str, str]) -> None:
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        database=None,  # nothing replayed between runs: each run draws afresh, a failure prints its case
        phases=[Phase.generate, Phase.shrink],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy)
    def check(case: schemathesis.Case) -> None:
        case.call_and_validate(headers=headers, timeout=10)  # the examples' cases carry no headers

    check()


def test_the_command_api_answers_every_generated_request_within_its_document(fuzz_stack: Stack) -> None:
    operations, failures = _fuzz(fuzz_stack.command_url, fuzz_stack.headers)
    assert operations >= 19
    assert not failures, f"{len(failures)} failing operation/mode pairs:\n\n" + "\n\n".join(failures)


def test_the_query_api_answers_every_generated_request_within_its_document(fuzz_stack: Stack) -> None:
    operations, failures = _fuzz(fuzz_stack.query_url, fuzz_stack.headers)
    assert operations >= 6
    assert not failures, f"{len(failures)} failing operation/mode pairs:\n\n" + "\n\n".join(failures)
