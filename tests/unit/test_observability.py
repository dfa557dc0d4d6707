"""services.observability: the guard, the tallies (exactly what the library's own calls would record), the page."""

from __future__ import annotations

from collections import Counter

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from services.observability import OTHER, LabelGuard, Metrics
from services.observability.tally import CounterTally, DeltaTally, Exposures, ExposureTally, HistogramTally
from services.projector.metrics import reason_of


def _samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(generate_latest(metrics.registry).decode())
        for s in family.samples
    }


def test_the_guard_keeps_known_values_up_to_its_limit_and_folds_the_rest() -> None:
    guard = LabelGuard(limit=2, known=lambda v: v.startswith("ok"))
    assert [guard(v) for v in ("ok.a", "bad", "ok.b", "ok.c", "ok.a")] == ["ok.a", OTHER, "ok.b", OTHER, "ok.a"]
    assert len(guard) == 2


def test_a_histogram_tally_flushes_exactly_what_observe_would_have_recorded() -> None:
    observed, tallied = Metrics(), Metrics()
    bounds = (0.001, 0.01, 0.1)
    direct = observed.histogram("t_seconds", "t", ("endpoint",), buckets=bounds)
    tally = HistogramTally(tallied.histogram("t_seconds", "t", ("endpoint",), buckets=bounds), bounds)
    for seconds in (0.0005, 0.001, 0.002, 0.05, 0.1, 3.0, 0.0):
        direct.labels("a").observe(seconds)
        tally.observe(("a",), seconds)
    tally.flush()
    tally.flush()  # a second flush adds nothing
    assert _samples(tallied) == _samples(observed)


def test_exposures_count_every_evaluation_they_hold_through_the_fold() -> None:
    metrics = Metrics()
    guard = LabelGuard(limit=1)
    counts = CounterTally(metrics.counter("e", "e", ("flag", "variant")), lambda ls: (guard(ls[0]), ls[1]))
    exposures = ExposureTally(counts)
    bulk = Exposures([("f1", "on"), ("f2", "off")])
    for _ in range(3):
        exposures.add(bulk)
    counts.add(("f1", "on"))
    exposures.flush()
    samples = _samples(metrics)
    assert samples[("flagstream_e_total", (("flag", "f1"), ("variant", "on")))] == 4
    assert samples[("flagstream_e_total", (("flag", OTHER), ("variant", "off")))] == 3
    exposures.flush()
    assert _samples(metrics) == samples


def test_a_delta_tally_adds_only_what_the_running_count_grew_by() -> None:
    metrics = Metrics()
    source: Counter[str] = Counter()
    delta = DeltaTally(metrics.counter("d", "d", ("cause",)), lambda: source)
    source["forbidden"] += 2
    delta.flush()
    source["forbidden"] += 1
    source["throttled"] += 1
    delta.flush()
    delta.flush()
    samples = _samples(metrics)
    assert samples[("flagstream_d_total", (("cause", "forbidden"),))] == 3
    assert samples[("flagstream_d_total", (("cause", "throttled"),))] == 1


async def test_the_page_is_openmetrics_when_asked_and_prometheus_text_otherwise() -> None:
    metrics = Metrics()
    metrics.counter("things", "Things.").inc()
    refreshed: list[int] = []
    metrics.before_scrape(lambda: refreshed.append(1))
    body, content_type = await metrics.page("application/openmetrics-text; version=1.0.0; charset=utf-8")
    assert content_type.startswith("application/openmetrics-text; version=1.0.0")
    assert body.endswith(b"# EOF\n") and b"flagstream_things_total 1.0" in body
    body, content_type = await metrics.page(None)
    assert content_type.startswith("text/plain; version=0.0.4")
    assert b"# TYPE flagstream_things_total counter" in body and b"_created" not in body
    assert refreshed == [1, 1]


def test_a_dead_letters_reason_label_is_its_first_words() -> None:
    assert reason_of("rejected by Postgres: value too long for type") == "rejected by Postgres"
    assert reason_of("UnicodeDecodeError: 'utf-8' codec can't decode") == "UnicodeDecodeError"
    assert reason_of("") == "unknown"
