"""Decoding records: a sound one becomes its event and value, anything else a dead letter with a reason."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from events import Level, OrgOverrideSet, hash_of
from flaglog import DeadLetter, Decoded, TopicPartition, decode_record
from tests.support.eventlog import EventLog
from tests.support.records import TOPIC, Rec, records


def test_a_sound_record_decodes_with_the_value_it_sets() -> None:
    log = EventLog()
    log.define("a.b")
    env = log.org("org-1", "a.b", True)
    item = decode_record(records(log)[1])
    assert isinstance(item, Decoded)
    assert item.envelope == env
    assert item.value == env.new == {"enabled": True, "rollout_percentage": None}
    assert item.tp == TopicPartition(TOPIC, 0) and item.offset == 1
    assert item.scope is not None and item.scope.level is Level.ORG


def _resealed(rec: Rec, **changes: Any) -> bytes:
    fields = json.loads(rec.value or b"")
    fields.update(changes)
    fields["hash"] = hash_of(fields)
    return json.dumps(fields).encode()


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda r: {"value": b"not json at all"}, r"not JSON"),
        (lambda r: {"value": None}, r"no value"),
        (lambda r: {"value": (r.value or b"").replace(b'"enabled":true', b'"enabled":false')}, r"hash"),
        (lambda r: {"headers": tuple(h for h in r.headers if h[0] != "ce_id")}, r"ce_id"),
        (lambda r: {"headers": (*r.headers, ("ce_type", b"\xff"))}, r"UTF-8"),
        (lambda r: {"key": b"someone-else"}, r"partition key"),
        (lambda r: {"value": _resealed(r, new={"enabled": False, "rollout_percentage": None})}, r"transition"),
        (lambda r: {"value": _resealed(r, reason="bad\u0000reason")}, r"NUL"),
        (
            lambda r: {
                "value": _resealed(
                    r,
                    previous={"enabled": None, "rollout_percentage": 300},
                    new={"enabled": True, "rollout_percentage": 300},
                )
            },
            r"malformed",
        ),
    ],
)
def test_an_unsound_record_becomes_a_dead_letter_with_a_reason(mutate: Any, reason: str) -> None:
    log = EventLog()
    log.define("a.b")
    log.org("org-1", "a.b", True)
    original = records(log)[1]
    broken = Rec(**{**original.__dict__, **mutate(original)})
    item = decode_record(broken)
    assert isinstance(item, DeadLetter)
    assert re.search(reason, item.reason), item.reason
    assert (item.key, item.value, item.headers) == (broken.key, broken.value, broken.headers)


def test_text_that_merely_looks_like_an_escaped_nul_is_fine() -> None:
    log = EventLog()
    log.add(OrgOverrideSet(flag_key="a.b", org_id="o1", enabled=True), reason="see C:\\u0000 in the docs")
    assert isinstance(decode_record(records(log)[0]), Decoded)


def test_dead_letter_headers_keep_the_originals_and_say_where_and_why() -> None:
    rec = Rec(TOPIC, 2, 41, b"org-1", b"{", (("ce_id", b"x"), ("ce_id", b"y")))
    letter = decode_record(rec)
    assert isinstance(letter, DeadLetter)
    out = letter.out_headers()
    assert out[:2] == [("ce_id", b"x"), ("ce_id", b"y")]
    extra = dict(out[2:])
    assert extra["dlq_topic"] == TOPIC.encode()
    assert extra["dlq_partition"] == b"2"
    assert extra["dlq_offset"] == b"41"
    assert extra["dlq_reason"]
