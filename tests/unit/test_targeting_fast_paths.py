"""The shortcuts `flagcore.targeting` takes for speed say what the libraries they stand in for say.

A regex test through RE2's compiled `Match`, and prefiltered by the pattern's required literal, against
google-re2's `search`; version precedence as a tuple against `semver.Version.compare`; membership in one set
per kind against comparing (kind, value) keys.
"""

from __future__ import annotations

from typing import Any

import re2
import semver
from hypothesis import example, given, settings
from hypothesis import strategies as st

from events.targeting import Operator, regex_options
from flagcore.model import Condition
from flagcore.targeting import _check, _matcher, _member, precedence, required_literal

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


TOKENS = ["a", "b", "c", "@", "é", "-", "\\.", "\\-", "\\\\", "\\d", "\\w", "\\b", "\\x41", "\\p{L}", "[a-c]",
          "[^@]", "[]a]", "[[:alpha:]]", "+", "*", "?", "+?", "{2}", "{1,3}", "{", "}", "^", "$", ".", "(a|b)",
          "|", "\\Qa.\\E", "]", "(?i)a", "A"]  # fmt: skip


@settings(max_examples=400)
@given(st.lists(st.sampled_from(TOKENS), min_size=1, max_size=8).map("".join),
       st.lists(st.text(alphabet=st.sampled_from("abc@é.-A\\1{}]"), max_size=9), min_size=1, max_size=6))  # fmt: skip
@example(r"^[a-z0-9._-]+@acme\.com$", ["user-1@acme.com", "user-2@example.org", "@acme.com", "x@acme.co"])
@example("a\\x41b", ["aAb", "a41b"])
@example("ab?c", ["ac", "abc"])
def test_a_pattern_prefiltered_by_its_required_literal_answers_what_re2_answers(
    pattern: str, values: list[str]
) -> None:
    try:
        compiled = re2.compile(pattern, regex_options())
    except re2.error:
        return  # refused at write time: never compiled
    test = _check(Condition("v", Operator.MATCHES, (pattern,)))
    for value in values:
        assert test(value) is (compiled.search(value) is not None), (pattern, value, required_literal(pattern))


def test_the_required_literal_of_a_domain_pattern() -> None:
    assert required_literal(r"^[a-z0-9._-]+@acme\.com$") == "@acme.com"
    assert required_literal("ab+c") == "ab" and required_literal("ab?cd") == "cd"
    assert [required_literal(p) for p in ("(a|b)c", "a|b", r"\x41bc", "[[:alpha:]]bc", "x.y")] == [
        None, None, None, None, "x"
    ]  # fmt: skip
