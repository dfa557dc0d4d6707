"""What a targeting rule's conditions mean: each compiled once into a test of the evaluation context.

The one definition of every operator, run by `flagcore.evaluate` and by the compiled plans alike
(`compiled` is cached per rule, so a regex is compiled, a version and a network parsed, once).
An attribute the context lacks (or holds as null) fails every operator but `not_exists`, the
negated ones too: "email does not end with @acme.com" is not said of a user whose email is unknown.
A value of another type than the operator compares (a number for `lt`, a string for `starts_with`)
fails it; `not_equals` / `not_in` hold for it, since it is none of the values.

A segment condition (`in_segment` / `not_in_segment`) tests the context against the segments it names, as
the rule's level resolves them (`Lookup`: an org's rules see the org's segments, then the system's; the
system's rules the system's only). A condition naming a segment that is unknown or archived is false, the
negated one too: such a rule never matches (fail closed: removing a segment never widens a rule).
A segment's test is compiled once per segment (its `in` lists as sets), and a rule's once per rule and the
segments it names, so a change of a segment is a new test, never a stale one.
"""

from __future__ import annotations

import ipaddress
import operator as op
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import re2
import semver

from events.targeting import SEGMENT_OPERATORS, Operator, regex_options
from flagcore.model import Condition, Segment, TargetingRule

__all__ = [
    "NO_SEGMENTS", "Lookup", "Test", "attributes", "compiled", "first_match", "precedence", "references",
    "required_literal", "test_of",
]  # fmt: skip

Test = Callable[[Mapping[str, Any]], bool]  # the evaluation context's attributes → whether the rule holds
Lookup = Callable[[str], Segment | None]  # a segment key → the segment a rule's level sees (None: unknown)
_Check = Callable[[Any], bool]  # a present attribute's value → whether the condition holds

_ORDER: dict[Operator, Callable[[Any, Any], bool]] = {
    Operator.LT: op.lt, Operator.LTE: op.le, Operator.GT: op.gt, Operator.GTE: op.ge,
    Operator.SEMVER_LT: op.lt, Operator.SEMVER_LTE: op.le, Operator.SEMVER_GT: op.gt, Operator.SEMVER_GTE: op.ge,
    Operator.SEMVER_EQ: op.eq, Operator.BEFORE: op.lt, Operator.AFTER: op.gt,
}  # fmt: skip


def attributes(
    context: Mapping[str, Any] | None, org_id: str, platform: str | None, user_id: str | None
) -> dict[str, Any]:
    """The attributes rules read: the context's, with `org`, `platform` and `targeting_key` (the user) the
    call's own (a context entry of those names is ignored; absent when the call has none)."""
    attrs = dict(context) if context else {}  # a copy, then the call's own: cheaper than filtering every key
    attrs["org"] = org_id
    if platform is not None:
        attrs["platform"] = platform
    elif "platform" in attrs:
        del attrs["platform"]
    if user_id is not None:
        attrs["targeting_key"] = user_id
    elif "targeting_key" in attrs:
        del attrs["targeting_key"]
    return attrs


def _no_segment(key: str) -> Segment | None:
    return None


NO_SEGMENTS: Lookup = _no_segment


def first_match(
    rules: tuple[TargetingRule, ...], attrs: Mapping[str, Any], lookup: Lookup = NO_SEGMENTS
) -> TargetingRule | None:
    """The first rule whose conditions all hold (None: no rule applies), segments resolved by `lookup`."""
    for rule in rules:
        keys, plain = _prepared(rule)
        test = plain if plain is not None else compiled(rule, tuple(lookup(k) for k in keys))
        if test(attrs):
            return rule
    return None


def test_of(rule: TargetingRule, lookup: Lookup = NO_SEGMENTS) -> Test:
    """The rule's test with the segments it names as `lookup` resolves them now."""
    keys, plain = _prepared(rule)
    return plain if plain is not None else compiled(rule, tuple(lookup(k) for k in keys))


def references(rule: TargetingRule) -> tuple[str, ...]:
    """The segment keys the rule names, in order, each once."""
    return _prepared(rule)[0]


@lru_cache(maxsize=8192)
def _prepared(rule: TargetingRule) -> tuple[tuple[str, ...], Test | None]:
    """The segment keys the rule names, and its test when it names none (one cache lookup per evaluation)."""
    keys = tuple(dict.fromkeys(str(v) for c in rule.conditions if c.operator in SEGMENT_OPERATORS for v in c.values))
    return keys, (None if keys else compiled(rule))


@lru_cache(maxsize=8192)
def compiled(rule: TargetingRule, segments: tuple[Segment | None, ...] = ()) -> Test:
    """The rule's test: every condition, in order, AND-ed; `segments` are those it names (`references`, in
    order) as its level resolves them (a segment condition naming one not given, or archived, fails)."""
    known = {s.key: s for s in segments if s is not None and not s.archived}
    tests = tuple(_condition(c, known) for c in rule.conditions)
    if len(tests) == 1:
        return tests[0]

    def all_hold(attrs: Mapping[str, Any]) -> bool:
        return all(test(attrs) for test in tests)

    return all_hold


@lru_cache(maxsize=4096)
def _in_segment(segment: Segment) -> Test:
    """Whether a context is in the segment: all its conditions hold (`in` lists are sets, compiled once)."""
    tests = tuple(_condition(c, {}) for c in segment.conditions)

    def all_hold(attrs: Mapping[str, Any]) -> bool:
        return all(test(attrs) for test in tests)

    return tests[0] if len(tests) == 1 else all_hold


def _never(attrs: Mapping[str, Any]) -> bool:
    return False


def _condition(condition: Condition, segments: Mapping[str, Segment]) -> Test:
    name = condition.attribute
    if condition.operator in SEGMENT_OPERATORS:
        if any(key not in segments for key in condition.values):
            return _never  # an unknown or archived segment: the rule never matches
        members = tuple(_in_segment(segments[str(key)]) for key in condition.values)
        if condition.operator is Operator.IN_SEGMENT:
            if len(members) == 1:
                return members[0]
            return lambda attrs: any(member(attrs) for member in members)
        return lambda attrs: not any(member(attrs) for member in members)
    if condition.operator is Operator.EXISTS:
        return lambda attrs: attrs.get(name) is not None
    if condition.operator is Operator.NOT_EXISTS:
        return lambda attrs: attrs.get(name) is None
    check = _check(condition)

    def holds(attrs: Mapping[str, Any]) -> bool:
        value = attrs.get(name)
        return value is not None and check(value)

    return holds


def _check(condition: Condition) -> _Check:
    kind, values, fold = condition.operator, condition.values, not condition.case_sensitive
    match kind:
        case Operator.EQUALS | Operator.IN:
            return _member(values, fold)
        case Operator.NOT_EQUALS | Operator.NOT_IN:
            member = _member(values, fold)
            return lambda value: not member(value)
        case Operator.STARTS_WITH | Operator.ENDS_WITH | Operator.CONTAINS:
            return _text(kind, str(values[0]), fold)
        case Operator.MATCHES:
            test = _matcher(re2.compile(("(?i)" if fold else "") + str(values[0]), regex_options()))
            needle = None if fold else required_literal(str(values[0]))
            if not needle:
                return test
            return lambda value: type(value) is str and needle in value and test(value)
        case Operator.LT | Operator.LTE | Operator.GT | Operator.GTE:
            compare, bound = _ORDER[kind], values[0]
            return lambda value: _is_number(value) and compare(value, bound)
        case Operator.SEMVER_EQ | Operator.SEMVER_LT | Operator.SEMVER_LTE | Operator.SEMVER_GT | Operator.SEMVER_GTE:
            compare, version = _ORDER[kind], precedence(semver.Version.parse(str(values[0])))
            return lambda value: (v := _version(value)) is not None and compare(v, version)
        case Operator.BEFORE | Operator.AFTER:
            compare, instant = _ORDER[kind], datetime.fromisoformat(str(values[0]))
            return lambda value: (t := _instant(value)) is not None and compare(t, instant)
        case Operator.IN_CIDR:
            networks = tuple(ipaddress.ip_network(str(v)) for v in values)
            return lambda value: (a := _address(value)) is not None and any(a in n for n in networks)
    raise AssertionError(kind)  # pragma: no cover - every operator is matched above


def _member(values: tuple[Any, ...], fold: bool) -> _Check:
    """Whether a value is one of `values`: strings (casefolded when asked), booleans and numbers (1 == 1.0)
    compared apart, so `True` is not `1`; anything else (a list, an object) is none of them. One set per kind,
    so a 1,000-value list costs one hash and one lookup."""
    strings = frozenset(v.casefold() if fold else v for v in values if type(v) is str)
    flags = frozenset(v for v in values if type(v) is bool)
    numbers = frozenset(v for v in values if _is_number(v))
    if not flags and not numbers:  # the usual list: strings only
        if fold:
            return lambda value: type(value) is str and value.casefold() in strings
        return lambda value: type(value) is str and value in strings

    def member(value: Any) -> bool:
        kind = type(value)
        if kind is str:
            return (value.casefold() if fold else value) in strings
        if kind is bool:
            return value in flags
        return (kind is int or kind is float) and value in numbers

    return member


def _text(kind: Operator, needle: str, fold: bool) -> _Check:
    needle = needle.casefold() if fold else needle
    if kind is Operator.STARTS_WITH:
        test: Callable[[str], bool] = lambda s: s.startswith(needle)  # noqa: E731
    elif kind is Operator.ENDS_WITH:
        test = lambda s: s.endswith(needle)  # noqa: E731
    else:
        test = lambda s: needle in s  # noqa: E731
    if fold:
        return lambda value: type(value) is str and test(value.casefold())
    return lambda value: type(value) is str and test(value)


def _matcher(pattern: Any) -> _Check:
    """Whether RE2 finds `pattern` in a string value (`search`). google-re2's `search` builds a match object
    with its offsets decoded back to characters, which a rule never reads (most of its cost); the compiled
    RE2 underneath answers from the UTF-8 bytes alone. Its `Match` is used where this google-re2 has it, its
    `search` otherwise (tests/unit/test_targeting_fast_paths.py holds the two equal). RE2 reads UTF-8: a string
    that has none (a lone surrogate, which JSON can carry) matches nothing."""
    regexp = getattr(pattern, "_regexp", None)
    match = getattr(regexp, "Match", None)
    anchor = getattr(getattr(re2, "_Anchor", None), "UNANCHORED", None)
    if match is None or anchor is None:
        return lambda value: type(value) is str and _searches(pattern, value)
    miss = (-1, -1)

    def found(value: Any) -> bool:
        if type(value) is not str:
            return False
        try:
            text = value.encode()
        except UnicodeEncodeError:
            return False
        return bool(match(anchor, text, 0, len(text))[0] != miss)

    return found


_BREAKS = frozenset(".^$[]()|")  # a class, a group, an alternation, an anchor, any character: no literal across
_OPTIONAL = frozenset("?*{")  # the character before may be absent (`{`: a repetition, {0,…} included)
_CLASS_ESCAPES = frozenset("dDsSwWbBAz")  # escapes of one letter and no argument: a class or an assertion


def required_literal(pattern: str) -> str | None:
    """The longest run of characters every match of a case-sensitive RE2 `pattern` contains (None: none
    found), so a value without it is refused without running RE2 (the prefilter RE2's FilteredRE2 computes).

    Conservative: no run is read from a pattern with a group, an alternation, inline flags, `\\Q…\\E` or an
    escape with arguments (`\\x41`, `\\p{L}`); a class, `.`, an anchor or a class escape (`\\d`, `\\b`) ends a
    run; a character followed by `?`, `*` or `{` is dropped, by `+` ends its run.
    tests/unit/test_targeting_fast_paths.py checks the prefiltered test against RE2 on generated patterns.
    """
    if "(" in pattern or "|" in pattern or "\\Q" in pattern:
        return None
    runs: list[str] = []
    run: list[str] = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\":
            nxt = pattern[i + 1 : i + 2]
            if nxt and not nxt.isalnum() and nxt.isascii() and not nxt.isspace():
                run.append(nxt)  # escaped punctuation: that character itself
            elif nxt in _CLASS_ESCAPES:
                runs.append("".join(run))
                run = []
            else:  # \x41, \p{Greek}, \123…: an escape with arguments this does not read
                return None
            i += 2
            continue
        if c == "[":  # a class: skip it whole (a `[` inside, as in [[:alpha:]], is not read: give up)
            end = _class_end(pattern, i)
            if end is None:
                return None
            runs.append("".join(run))
            run = []
            i = end + 1
            continue
        if c in _OPTIONAL:
            if run:
                run.pop()
            runs.append("".join(run))
            run = []
            if c == "{":
                close = pattern.find("}", i)
                i = len(pattern) if close < 0 else close + 1
                continue
        elif c == "+" or c in _BREAKS:  # `+`: the character is there, but what follows may not be next to it
            runs.append("".join(run))
            run = []
        else:
            run.append(c)
        i += 1
    runs.append("".join(run))
    best = max(runs, key=len)
    return best or None


def _class_end(pattern: str, start: int) -> int | None:
    """The index of the `]` closing the class opened at `start` (None: one this does not read)."""
    i = start + 1
    if pattern[i : i + 1] == "^":
        i += 1
    if pattern[i : i + 1] == "]":  # a leading `]` is a member
        i += 1
    while i < len(pattern):
        c = pattern[i]
        if c == "\\":
            i += 2
            continue
        if c == "[":
            return None
        if c == "]":
            return i
        i += 1
    return None


def _searches(pattern: Any, value: str) -> bool:
    try:
        return pattern.search(value) is not None
    except UnicodeEncodeError:
        return False


def _is_number(value: Any) -> bool:
    return type(value) in (int, float)


Precedence = tuple[Any, ...]


def precedence(version: semver.Version) -> Precedence:
    """SemVer 2.0's precedence (section 11) as a tuple Python orders the same way, as `semver` compares
    (build metadata ignored): major, minor, patch, then a release above its pre-releases, whose identifiers
    compare numeric ones by value below alphanumeric ones in ASCII order, a shorter list of equal ones first.
    `semver.Version`'s own comparison re-derives this on every call, several microseconds."""
    head = (version.major, version.minor, version.patch)
    if not version.prerelease:
        return (*head, (1,))
    parts = tuple(_identifier(p) for p in version.prerelease.split("."))
    return (*head, (0, parts))


def _identifier(part: str) -> tuple[int, int, str]:
    if not part.isdigit():
        return (1, 0, part)
    digits = part.lstrip("0") or "0"
    return (0, len(digits), digits)  # by value, without turning a long run of digits into an int


def _version(value: Any) -> Precedence | None:
    return _parsed_version(value) if type(value) is str else None


@lru_cache(maxsize=4096)  # a context's versions are few and repeat; parsing one costs more than the rest
def _parsed_version(value: str) -> Precedence | None:
    try:
        return precedence(semver.Version.parse(value))
    except ValueError:
        return None


def _instant(value: Any) -> datetime | None:
    """An ISO 8601 instant (UTC when it names no offset) or seconds since the epoch."""
    try:
        if type(value) is str:
            instant = datetime.fromisoformat(value)
            return instant if instant.tzinfo is not None else instant.replace(tzinfo=UTC)
        if _is_number(value):
            return datetime.fromtimestamp(value, UTC)
    except (ValueError, OverflowError, OSError):
        return None
    return None


def _address(value: Any) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    return _parsed_address(value) if type(value) is str else None


@lru_cache(maxsize=4096)
def _parsed_address(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        return None
