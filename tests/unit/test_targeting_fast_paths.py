"""The shortcuts `flagcore.targeting` takes for speed say what the libraries they stand in for say.

A regex test through RE2's compiled `Match` against google-re2's `search`; version precedence as a tuple
against `semver.Version.compare`; membership in one set per kind against comparing (kind, value) keys.
"""

from __future__ import annotations

from typing import Any

import re2
import semver
from hypothesis import example, given
from hypothesis import strategies as st

from events.targeting import regex_options
from flagcore.targeting import _matcher, _member, precedence

PATTERNS = [r"@acme\.com$", r"^[a-z]+@", "(?i)ACME", "", "^", "x*", r"\d{3}", "é+", r"\bfoo\b", "(a|b)(c)?", "^$"]


@given(st.sampled_from(PATTERNS), st.text(alphabet=st.sampled_from("abcxé@.ACME0123 \ud800"), max_size=12))
@example(r"@acme\.com$", "ana@acme.com")
@example("é+", "café")
def test_the_compiled_match_finds_what_search_finds(pattern: str, value: str) -> None:
    compiled = re2.compile(pattern, regex_options())
    try:
        expected = compiled.search(value) is not None
    except UnicodeEncodeError:  # not UTF-8: RE2 cannot read it, so it matches nothing
        expected = False
    assert _matcher(compiled)(value) is expected


def test_the_compiled_match_refuses_what_is_not_a_string() -> None:
    test = _matcher(re2.compile("1", regex_options()))
    assert [test(v) for v in (1, 1.0, True, None, ["1"], b"1")] == [False] * 6


identifier = st.one_of(
    st.integers(0, 30).map(str),
    st.just("1" * 30),  # longer than any int a version's number would hold, compared by value all the same
    st.text(alphabet=st.sampled_from("abz-A0"), min_size=1, max_size=4).filter(lambda s: not s.isdigit()),
)
versions = st.builds(
    lambda core, pre, build: semver.Version(*core, prerelease=".".join(pre) or None, build=".".join(build) or None),
    st.tuples(st.integers(0, 3), st.integers(0, 11), st.integers(0, 3)),
    st.lists(identifier, max_size=3),
    st.lists(st.sampled_from(["b1", "001", "x"]), max_size=2),
)


@given(versions, versions)
@example(semver.Version.parse("1.0.0-alpha"), semver.Version.parse("1.0.0-alpha.1"))
@example(semver.Version.parse("1.0.0-beta.11"), semver.Version.parse("1.0.0-beta.2"))
@example(semver.Version.parse("1.0.0-rc.1"), semver.Version.parse("1.0.0"))
@example(semver.Version.parse("2.10.0"), semver.Version.parse("2.9.0"))
@example(semver.Version.parse("1.0.0+build.1"), semver.Version.parse("1.0.0+build.2"))
def test_precedence_orders_versions_as_semver_does(a: semver.Version, b: semver.Version) -> None:
    ka, kb = precedence(a), precedence(b)
    assert (ka > kb) - (ka < kb) == a.compare(b)


def _reference(values: tuple[Any, ...], fold: bool, value: Any) -> bool:
    """Membership as (kind, value) keys: strings (casefolded when asked), booleans and numbers apart."""

    def key(v: Any) -> tuple[str, Any] | None:
        if type(v) is str:
            return ("s", v.casefold() if fold else v)
        if type(v) is bool:
            return ("b", v)
        if type(v) in (int, float):
            return ("n", v)
        return None

    return key(value) in {key(v) for v in values}


SCALARS = ["a", "A", "ß", "SS", "", 1, 1.0, 0, 2.5, True, False]


@given(
    st.lists(st.sampled_from(SCALARS), min_size=1, max_size=5).map(tuple),
    st.booleans(),
    st.sampled_from([*SCALARS, None, [1], {"a": 1}, float("nan"), "ss"]),
)
def test_membership_is_by_kind_and_value(values: tuple[Any, ...], fold: bool, value: Any) -> None:
    assert _member(values, fold)(value) is _reference(values, fold, value)
