"""`/metrics` on the real services: the series move by exactly what was done, summed over the query's workers.

A stack of its own (two query workers), the console and the notifier: evaluations on every hot
route and the app's bulk route, from connections held open at once so both
workers answer, then a write, a refused write and the projection of the write.
"""

from __future__ import annotations

import json
import tempfile
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml

from services.infra.settings import Settings
from tests.support.metrics import Page, referenced_metrics, scrape, settled, wait_for_page
from tests.support.processes import ServiceProcess, free_port
from tests.support.stack import Stack, start_stack

pytestmark = pytest.mark.integration

FLAG, OTHER_FLAG = "metrics.probe", "metrics.other"
REASON = "metrics test"
EVALUATIONS = "flagstream_evaluations_total"


@dataclass
class Deployment:
    stack: Stack
    console_url: str
    notifier_url: str
    evaluator: dict[str, str]
    org: str

    @property
    def urls(self) -> dict[str, str]:
        s = self.stack
        return {"command": s.command_url, "query": s.query_url, "projector": s.projector_url,
                "console": self.console_url, "notifier": self.notifier_url}


@pytest.fixture(scope="module")
def deployment(make_settings: Callable[[], Settings], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    logs = tmp_path_factory.mktemp("metrics-logs")
    settings = make_settings().model_copy(update={"query_workers": 2, "console_port": free_port()})
    stack = start_stack(settings, logs)
    console_url = f"http://127.0.0.1:{settings.console_port}"
    console = ServiceProcess("console", settings, logs, f"{console_url}/healthz")
    notifier_url = f"http://127.0.0.1:{settings.notifier_port}"
    notifier = ServiceProcess("notifier", settings, logs, f"{notifier_url}/healthz")
    org = f"m-{uuid.uuid4().hex[:8]}"
    try:
        console.start()
        notifier.start()
        with httpx.Client(timeout=10, headers=stack.headers) as http:
            for key in (FLAG, OTHER_FLAG):
                assert http.post(f"{stack.command_url}/v1/flags",
                                 json={"key": key, "group": "metrics", "reason": REASON}).status_code == 201
            assert http.put(f"{stack.command_url}/v1/flags/{FLAG}/system",
                            json={"enabled": True, "reason": REASON}).status_code == 201
            made = http.post(f"{stack.command_url}/v1/keys",
                             json={"name": "metrics evaluator", "role": "evaluator", "org_id": org, "reason": REASON})
            assert made.status_code == 201, made.text
            evaluator = {"Authorization": f"Bearer {made.json()['key']}"}
        wait_for_page(stack.projector_url, lambda p: p.value("flagstream_projector_events_applied_total") >= 3)
        _until_on(stack.query_url, evaluator)
        yield Deployment(stack, console_url, notifier_url, evaluator, org)
    finally:
        notifier.stop()
        console.stop()
        stack.stop()


def _until_on(query_url: str, headers: dict[str, str]) -> None:
    """Wait for the system default to be projected and the key to be known."""
    page = wait_for_page(query_url, lambda _: httpx.post(
        f"{query_url}/ofrep/v1/evaluate/flags/{FLAG}", json={"context": {}}, headers=headers, timeout=5
    ).json().get("value") is True)
    assert page is not None


def test_evaluations_are_counted_exactly_over_every_worker(deployment: Deployment) -> None:
    q, headers = deployment.stack.query_url, deployment.evaluator
    before = settled(q)

    def evaluate(client: int) -> None:
        with httpx.Client(timeout=10, headers=headers) as http:  # one connection, held while the others run
            for i in range(5):
                user = {"context": {"targetingKey": f"u-{client}-{i % 2}"}}
                assert http.post(f"{q}/ofrep/v1/evaluate/flags/{FLAG}", json=user).status_code == 200
                assert http.get(f"{q}/v1/orgs/{deployment.org}/flags/{FLAG}").status_code == 200
                assert http.post(f"{q}/ofrep/v1/evaluate/flags", json=user).status_code == 200  # both flags

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(evaluate, range(8)))
    # per client: 5 single OFREP + 5 native + 5 bulk (each of FLAG and OTHER_FLAG once)
    wanted = {FLAG: 8 * 15, OTHER_FLAG: 8 * 5}

    def moved(page: Page) -> dict[str, float]:
        return {key: page.total(EVALUATIONS, flag=key) - before.total(EVALUATIONS, flag=key) for key in wanted}

    after = wait_for_page(q, lambda page: moved(page) == wanted)
    assert moved(after) == wanted
    # the deciding level and reason of each: the system default, fixed
    assert after.total(EVALUATIONS, flag=FLAG, level="system", reason="STATIC", variant="on") - before.total(
        EVALUATIONS, flag=FLAG, level="system", reason="STATIC", variant="on") == 8 * 15
    for _ in range(5):  # whichever worker answers the scrape shows the same totals, and no more come
        assert moved(scrape(q)) == wanted
    latency = "flagstream_evaluation_duration_seconds_count"
    for endpoint in ("ofrep_single", "ofrep_bulk", "native"):
        assert after.value(latency, endpoint=endpoint) - before.value(latency, endpoint=endpoint) == 40
    route = {"route": "/ofrep/v1/evaluate/flags/{key}", "method": "POST", "status": "200"}
    assert after.value("flagstream_http_requests_total", **route) - before.value(
        "flagstream_http_requests_total", **route) == 40
    sources = ("plan", "kept", "computed")
    answers = sum(after.value("flagstream_query_answers_total", source=s)
                  - before.value("flagstream_query_answers_total", source=s) for s in sources)
    assert answers == 8 * 15  # every OFREP and native answer, from wherever it came
    assert _worker_files(deployment.stack) >= 2, "both workers wrote their counts"


def _worker_files(stack: Stack) -> int:
    """How many of the query service's workers wrote counters into its multiprocess directory."""
    assert stack.query.proc is not None
    pid = stack.query.proc.pid
    workers = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    made = list(Path(tempfile.gettempdir()).glob("flagstream-query-metrics-*"))
    return sum(1 for worker in workers if any((d / f"counter_{worker}.db").exists() for d in made))


def test_auth_denials_are_counted_by_cause(deployment: Deployment) -> None:
    q = deployment.stack.query_url
    before = settled(q)
    for _ in range(3):
        refused = httpx.post(f"{q}/ofrep/v1/evaluate/flags/{FLAG}", json={"context": {}},
                             headers={"Authorization": "Bearer not-a-key", "Connection": "close"})
        assert refused.status_code == 401
    cause = {"cause": "unauthenticated"}
    after = wait_for_page(q, lambda p: p.value("flagstream_auth_denials_total", **cause)
                          - before.value("flagstream_auth_denials_total", **cause) >= 3)
    assert after.value("flagstream_auth_denials_total", **cause) - before.value(
        "flagstream_auth_denials_total", **cause) == 3


def test_a_write_moves_the_command_relay_and_projector_series(deployment: Deployment) -> None:
    stack = deployment.stack
    command, projector = scrape(stack.command_url), scrape(stack.projector_url)
    with httpx.Client(timeout=10, headers=stack.headers) as http:
        changed = http.put(f"{stack.command_url}/v1/orgs/{deployment.org}/flags/{OTHER_FLAG}",
                           json={"enabled": True, "reason": REASON})
        assert changed.status_code == 201, changed.text
        stale = http.put(f"{stack.command_url}/v1/orgs/{deployment.org}/flags/{OTHER_FLAG}",
                         json={"enabled": False, "reason": REASON, "expected_version": 99})
        assert stale.status_code == 409 and stale.json()["error"] == "version_conflict"
    published = "flagstream_relay_published_events_total"
    after = wait_for_page(stack.command_url, lambda p: p.value(published) > command.value(published))
    assert after.value(published) - command.value(published) == 1
    assert after.value("flagstream_outbox_backlog_events") == 0
    assert after.value("flagstream_relay_leader") == 1 and after.value("flagstream_relay_kafka_up") == 1
    rejected = "flagstream_command_rejections_total"
    assert after.value(rejected, code="version_conflict") - command.value(rejected, code="version_conflict") == 1
    route = {"route": "/v1/orgs/{org_id}/flags/{flag_key}", "method": "PUT"}
    requests = "flagstream_http_requests_total"
    assert after.value(requests, status="201", **route) - command.value(requests, status="201", **route) == 1
    assert after.value(requests, status="409", **route) - command.value(requests, status="409", **route) == 1

    applied = "flagstream_projector_events_applied_total"
    projected = wait_for_page(stack.projector_url, lambda p: p.value(applied) > projector.value(applied))
    assert projected.value(applied) - projector.value(applied) == 1
    lag = {k: v for (name, k), v in projected.samples.items() if name == "flagstream_projector_lag_records"}
    assert lag and all(v == 0 for v in lag.values()), lag
    assert projected.total("flagstream_projector_lag_seconds") == 0
    assert projected.value("flagstream_projector_batch_duration_seconds_count") > projector.value(
        "flagstream_projector_batch_duration_seconds_count")


@pytest.mark.parametrize("service", ["command", "query", "projector", "console", "notifier"])
def test_every_service_serves_prometheus_text_or_openmetrics_as_asked(deployment: Deployment, service: str) -> None:
    url = deployment.urls[service]
    text = httpx.get(f"{url}/metrics", headers={"Connection": "close"})
    assert text.status_code == 200 and text.headers["content-type"].startswith("text/plain; version=0.0.4")
    open_metrics = httpx.get(f"{url}/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0",
                                                        "Connection": "close"})
    assert open_metrics.headers["content-type"].startswith("application/openmetrics-text; version=1.0.0")
    assert open_metrics.text.endswith("# EOF\n")
    names = {line.split()[2] for line in text.text.splitlines() if line.startswith("# TYPE")}
    assert names and all(name.startswith("flagstream_") for name in names), names


def test_the_console_counts_its_requests_by_route(deployment: Deployment) -> None:
    url = deployment.console_url
    before = scrape(url)
    for _ in range(2):
        assert httpx.get(f"{url}/healthz").status_code == 200
    assert httpx.get(f"{url}/no/such/page/{uuid.uuid4().hex}").status_code == 404
    after = scrape(url)
    requests = "flagstream_http_requests_total"
    ok = {"route": "/healthz", "method": "GET", "status": "200"}
    assert after.value(requests, **ok) - before.value(requests, **ok) == 2
    missing = {"route": "__unmatched__", "method": "GET", "status": "404"}
    assert after.value(requests, **missing) - before.value(requests, **missing) == 1


DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def test_the_alerts_and_the_dashboard_name_only_metrics_a_service_exports(deployment: Deployment) -> None:
    rules = yaml.safe_load((DEPLOY / "prometheus/alerts.yml").read_text())
    alerts = {rule["alert"]: rule for group in rules["groups"] for rule in group["rules"]}
    assert {"FlagstreamProjectorLagging", "FlagstreamDeadLettersGrowing", "FlagstreamOutboxBacklogGrowing",
            "FlagstreamRelayDown", "FlagstreamNotifierDeadLetters"} <= set(alerts)
    for name, rule in alerts.items():
        assert rule["expr"].strip() and rule["labels"]["severity"] and rule["annotations"]["summary"], name
    dashboard = json.loads((DEPLOY / "grafana/flagstream.json").read_text())
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    assert exprs, "the dashboard has no queries"
    referenced = referenced_metrics("\n".join(rule["expr"] for rule in alerts.values()) + "\n" + "\n".join(exprs))
    pages = [scrape(url) for url in deployment.urls.values()]
    missing = sorted(name for name in referenced if not any(page.declares(name) for page in pages))
    assert not missing, f"named by deploy/ but exported by no service: {missing}"
    assert len(referenced) >= 15, referenced
