"""Reading a service's `/metrics` page as the tests compare it: samples by name and labels, families declared."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx
from prometheus_client.parser import text_string_to_metric_families

SUFFIXES = ("_total", "_bucket", "_count", "_sum", "_created")
METRIC_NAME = re.compile(r"\bflagstream_[a-z0-9_]+")


@dataclass(frozen=True)
class Page:
    """One scrape: each sample's value by (name, sorted labels), and the family names the page declares."""

    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float]
    families: frozenset[str]

    def value(self, name: str, **labels: str) -> float:
        """The sample's value; 0 when the page has no such series (a counter not yet counted)."""
        return self.samples.get((name, tuple(sorted(labels.items()))), 0.0)

    def total(self, name: str, **labels: str) -> float:
        """The sum over every series of `name` whose labels include `labels`."""
        wanted = set(labels.items())
        return sum(v for (n, ls), v in self.samples.items() if n == name and wanted <= set(ls))

    def declares(self, name: str) -> bool:
        """`name` (as a query names it: with `_total`, `_bucket`…) is a family on this page."""
        base = name
        for suffix in SUFFIXES:
            if name.endswith(suffix) and name.removesuffix(suffix) in self.families:
                base = name.removesuffix(suffix)
        return base in self.families


def scrape(url: str) -> Page:
    response = httpx.get(f"{url}/metrics", timeout=10, headers={"Connection": "close"})
    response.raise_for_status()
    return parse(response.text)


def parse(text: str) -> Page:
    """A page in Prometheus text format, as `scrape` reads it."""
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    families = set()
    for family in text_string_to_metric_families(text):
        families.add(family.name)
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return Page(samples, frozenset(families))


def settled(url: str, flush_seconds: float = 1.0) -> Page:
    """A scrape after every process has flushed what it counted so far (a baseline to compare with)."""
    time.sleep(flush_seconds + 0.5)
    return scrape(url)


def wait_for_page(url: str, check: Callable[[Page], bool], timeout: float = 15.0) -> Page:
    """Scrape until `check` holds (counts reach a page within a flush interval); the last page either way."""
    deadline = time.monotonic() + timeout
    while True:
        page = scrape(url)
        if check(page) or time.monotonic() > deadline:
            return page
        time.sleep(0.2)


def referenced_metrics(text: str) -> set[str]:
    """Every `flagstream_…` name in a rule file's or a dashboard's text."""
    return set(METRIC_NAME.findall(text))
