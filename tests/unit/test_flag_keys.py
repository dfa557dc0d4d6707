"""The flag key rule (`events.vocabulary`): keys as other systems write them, one rule that every layer applies.

Letters of either case, digits, `_`, `-`, `.`, 1 to 255 characters, not dots alone; case is kept, so
`Feature.A` and `feature.a` are two flags. The pydantic models (Rust's regex engine), `is_flag_key` (Python's)
and the fast decoder must all say the same of any string, and every key the old rule accepted stays valid.
"""

from __future__ import annotations

import string
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from events import FlagDefined, Level, Platform, RolloutPercentageSet, SystemDefaultSet
from events.fields import FlagKey
from events.scope import MAX_STREAM_LENGTH, Scope, definition_stream
from events.vocabulary import FLAG_KEY_PATTERN, MAX_FLAG_KEY, is_flag_key
from flagcore import evaluate, fold
from flagcore.catalog import SEED_FLAGS
from flaglog import Decoded, decode_fast, decode_record, fastdecode
from services.command.api import create_app as command_app
from services.infra.settings import Settings
from services.query.api import create_app as query_app
from tests.support.eventlog import EventLog

ALPHABET = string.ascii_letters + string.digits + "_-."
LONGEST = "K" * 200 + ".with_UPPER-case" + "x" * (MAX_FLAG_KEY - 216)
MIGRATED = ["new_checkout", "Feature.A", "feature.a", "FEATURE_A", "a", "_", "-x", ".hidden", "...x", "1.2.3", LONGEST]
REFUSED = ["", ".", "..", "...", "a/b", "/a", "a b", " a", "a\t", "a\n", "caf\u00e9", "k\u0130", "a:b", "a%2Fb",
           "a\x00", "x" * (MAX_FLAG_KEY + 1)]  # fmt: skip
# The rule before keys from other systems were accepted: a subset of today's (event bytes written under it).
OLD_PATTERN = r"^[a-z][a-z0-9-]*(\.[a-z0-9][a-z0-9-]*)*$"

as_flag_key = TypeAdapter(FlagKey)


def model_accepts(value: str) -> bool:
    try:
        as_flag_key.validate_python(value)
    except ValidationError:
        return False
    return True


def test_the_longest_key_is_255_characters() -> None:
    assert len(LONGEST) == MAX_FLAG_KEY == 255


@pytest.mark.parametrize("key", MIGRATED, ids=lambda k: k[:20])
def test_keys_as_other_systems_write_them_are_valid(key: str) -> None:
    assert is_flag_key(key) and model_accepts(key)
    assert as_flag_key.validate_python(key) == key  # kept exactly: no case folding, no stripping


@pytest.mark.parametrize("key", REFUSED, ids=repr)
def test_slash_whitespace_empty_non_ascii_too_long_and_dots_alone_are_refused(key: str) -> None:
    assert not is_flag_key(key) and not model_accepts(key)


@settings(max_examples=300)
@given(st.text(ALPHABET, min_size=1, max_size=MAX_FLAG_KEY).filter(lambda k: k.strip(".")))
def test_every_string_of_the_alphabet_up_to_255_is_a_key(key: str) -> None:
    assert is_flag_key(key) and model_accepts(key)


@settings(max_examples=300)
@given(st.text(ALPHABET, max_size=40), st.characters(blacklist_characters=ALPHABET), st.text(ALPHABET, max_size=40))
def test_one_character_outside_the_alphabet_refuses_the_key(before: str, odd: str, after: str) -> None:
    key = before + odd + after
    assert not is_flag_key(key) and not model_accepts(key)


@settings(max_examples=500)
@given(st.text(max_size=300) | st.text(ALPHABET + " /\n\u00e9", max_size=300))
def test_the_models_the_function_and_the_fast_decoder_agree_on_any_string(key: str) -> None:
    fast = len(key) <= MAX_FLAG_KEY and fastdecode.FLAG_KEY.match(key) is not None
    assert is_flag_key(key) == model_accepts(key) == fast


@given(st.from_regex(OLD_PATTERN, fullmatch=True).filter(lambda k: len(k) <= 100))
def test_every_key_the_old_rule_accepted_stays_valid(key: str) -> None:
    assert is_flag_key(key) and model_accepts(key)


def test_the_seed_catalogue_keys_are_valid() -> None:
    assert all(is_flag_key(seed.key) for seed in SEED_FLAGS)


def test_the_pattern_is_anchored_and_has_no_look_around() -> None:
    """JSON Schema's regexes (ECMA-262) and the generators that read the OpenAPI document read it as we do."""
    assert FLAG_KEY_PATTERN.startswith("^") and FLAG_KEY_PATTERN.endswith("$") and "(?" not in FLAG_KEY_PATTERN


def test_the_longest_stream_fits_the_envelope() -> None:
    longest = Scope.user("o" * 64, "u" * 128).stream(LONGEST)
    assert len(longest) <= MAX_STREAM_LENGTH
    assert definition_stream("Feature.A") == "flag/Feature.A"


def test_keys_differing_only_in_case_are_two_flags() -> None:
    log = EventLog()
    log.define("Feature.A")
    log.define("feature.a")
    log.add(SystemDefaultSet(flag_key="Feature.A", enabled=True))
    state = fold(log.events)
    assert {"Feature.A", "feature.a"} <= state.catalog.definitions.keys()
    tenant = state.tenant("acme")
    assert evaluate(state.catalog, tenant, "Feature.A").value is True
    assert evaluate(state.catalog, tenant, "feature.a").value is False
    assert evaluate(state.catalog, tenant, "FEATURE.A").error_code is not None


def test_events_of_migrated_keys_decode_the_same_on_both_paths_at_every_level() -> None:
    log = EventLog()
    org, user = "o" * 64, "u" * 128
    for key in ("new_checkout", "Feature.A", LONGEST):
        log.add(FlagDefined(flag_key=key, group="migrated"))
        log.system(key, True)
        log.org(org, key, True)
        log.platform(org, Platform.META, key, False)
        log.user(org, user, key, True)
        log.add(RolloutPercentageSet(flag_key=key, level=Level.ORG, org_id=org, percentage=30))
    for record in log.records():
        full, fast = decode_record(record), decode_fast(record)
        assert isinstance(full, Decoded) and isinstance(fast, Decoded), (full, fast)
        assert fast.envelope == full.envelope and (fast.scope, fast.value) == (full.scope, full.value)
        assert full.envelope.flag_key in ("new_checkout", "Feature.A", LONGEST)


# --- the OpenAPI documents state the rule ----------------------------------------------------------------------

KEY_NAMES = {"flag_key", "key", "flag"}


def _stated(schema: dict[str, Any]) -> dict[str, Any]:
    """The string constraints a (possibly nullable: `anyOf`) schema states, merged."""
    merged = {k: v for k, v in schema.items() if k != "anyOf"}
    for branch in schema.get("anyOf", ()):
        merged.update(branch)
    return merged


def flag_key_fields() -> list[tuple[str, dict[str, Any]]]:
    """(where, schema) of every flag key either app's document declares: path and query parameters, body fields."""
    found = []
    for app in (command_app(Settings()), query_app(Settings())):
        doc = app.openapi()
        components = doc["components"]["schemas"]
        for path, operations in doc["paths"].items():
            for method, operation in operations.items():
                where = f"{app.title}: {method.upper()} {path}"
                found += [
                    (f"{where} {p['in']} {p['name']}", p["schema"])
                    for p in operation.get("parameters", ())
                    if p["name"] in KEY_NAMES and p["in"] in ("path", "query")
                ]
                body = operation.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema", {})
                ref = body.get("$ref", "")
                properties = components[ref.rsplit("/", 1)[-1]].get("properties", {}) if ref else {}
                found += [(f"{where} body {n}", s) for n, s in properties.items() if n in {"flag_key", "key"}]
    return found


def test_every_documented_flag_key_states_the_pattern_and_the_lengths() -> None:
    fields = flag_key_fields()
    assert {
        "flagstream command API: POST /v1/flags body key",
        "flagstream command API: PUT /v1/orgs/{org_id}/flags/{flag_key} path flag_key",
        "flagstream command API: POST /v1/orgs/{org_id}/rollback body flag_key",
        "flagstream command API: GET /v1/history query flag",
        "flagstream query: GET /v1/orgs/{org_id}/flags/{flag_key} path flag_key",
        "flagstream query: POST /ofrep/v1/evaluate/flags/{key} path key",
    } <= {where for where, _ in fields}
    for where, schema in fields:
        stated = _stated(schema)
        assert (stated.get("pattern"), stated.get("minLength"), stated.get("maxLength")) == (
            FLAG_KEY_PATTERN, 1, MAX_FLAG_KEY), where  # fmt: skip
