"""Garbage on the changes topic: `decode_record` never raises and dead-letters every bad record.

Whatever arrives (random bytes, random JSON, a sound event with one field changed,
resealed or not, a wrong key, missing or wrong CloudEvents headers, no value),
the projector must neither crash nor apply it: each bad record becomes a
`DeadLetter` that carries the record as it came, a non-empty reason, and
dead-letter headers a Kafka producer can send. Sound events decode to exactly
the envelope that was sealed.
"""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from events import decode
from flaglog import DeadLetter, Decoded, decode_record
from tests.support.garbage import (
    CHECKED_HEADERS,
    GarbageRecord,
    bad_records,
    garbled_headers,
    headers,
    no_value,
    one_field_changed,
    random_bytes,
    random_json,
    resealed_bad_setting,
    resealed_break,
    resealed_random_change,
    sound_records,
    wrong_key,
    wrong_required_header,
)

many = settings(max_examples=200, deadline=None)


def assert_dead_letter(record: GarbageRecord) -> DeadLetter:
    item = decode_record(record)
    assert isinstance(item, DeadLetter), f"{record.kind}: not dead-lettered: {item!r}"
    assert item.reason.strip(), f"{record.kind}: empty reason"
    assert (item.topic, item.partition, item.offset) == (record.topic, record.partition, record.offset)
    assert (item.key, item.value, item.headers) == (record.key, record.value, tuple(record.headers))
    out = item.out_headers()  # what KafkaDeadLetters sends: every value bytes, the reason UTF-8
    assert all(isinstance(k, str) and (v is None or isinstance(v, bytes)) for k, v in out)
    extra = dict(out[len(record.headers) :])
    assert extra["dlq_reason"].decode() == item.reason
    assert extra["dlq_offset"] == str(record.offset).encode()
    return item


# --- sound records decode ---------------------------------------------------------------------------


@given(sound_records(), st.integers(0, 2**31), st.integers(0, 2**62))
def test_a_sound_record_decodes_to_the_event_that_was_sealed(
    record: GarbageRecord, partition: int, offset: int
) -> None:
    record = replace(record, partition=partition, offset=offset)
    item = decode_record(record)
    assert isinstance(item, Decoded), item
    assert record.value is not None
    assert item.envelope == decode(record.value)
    assert (item.tp.partition, item.offset) == (partition, offset)


@given(sound_records(), headers.filter(lambda hs: not {k.lower() for k, _ in hs} & set(CHECKED_HEADERS)))
def test_headers_the_decoder_does_not_check_do_not_make_a_sound_record_bad(
    record: GarbageRecord, noise: tuple[tuple[str, bytes | None], ...]
) -> None:
    """Extra, unknown or odd headers (even non-UTF-8 ones) next to the CloudEvents ones are informational."""
    readable = tuple((k, v) for k, v in noise if v is not None and _utf8(v))
    item = decode_record(replace(record, headers=(*readable, *record.headers)))
    assert isinstance(item, Decoded), item


def _utf8(value: bytes) -> bool:
    try:
        value.decode()
    except UnicodeDecodeError:
        return False
    return True


# --- each kind of garbage, then all of it mixed ------------------------------------------------------


@many
@given(random_bytes())
def test_random_bytes_are_dead_lettered(record: GarbageRecord) -> None:
    assert_dead_letter(record)


@many
@given(random_json())
def test_random_json_is_dead_lettered(record: GarbageRecord) -> None:
    assert_dead_letter(record)


@many
@given(one_field_changed())
def test_a_sound_event_with_one_field_changed_or_removed_is_dead_lettered(record: GarbageRecord) -> None:
    assert_dead_letter(record)


@many
@given(resealed_break())
def test_a_resealed_event_that_breaks_a_rule_is_dead_lettered(record: GarbageRecord) -> None:
    assert_dead_letter(record)


@many
@given(resealed_bad_setting())
def test_a_resealed_setting_whose_value_is_not_the_transition_is_dead_lettered(record: GarbageRecord) -> None:
    item = assert_dead_letter(record)
    assert "transition" in item.reason or "malformed" in item.reason, item.reason


@many
@given(wrong_key())
def test_a_sound_event_under_the_wrong_key_is_dead_lettered(record: GarbageRecord) -> None:
    assert "partition key" in assert_dead_letter(record).reason


@many
@given(wrong_required_header())
def test_a_missing_or_wrong_cloudevents_header_is_dead_lettered(record: GarbageRecord) -> None:
    assert_dead_letter(record)


@many
@given(garbled_headers())
def test_garbled_headers_are_dead_lettered(record: GarbageRecord) -> None:
    assert_dead_letter(record)


@given(no_value())
def test_a_record_without_a_value_is_dead_lettered(record: GarbageRecord) -> None:
    assert_dead_letter(record)


@many
@given(resealed_random_change())
def test_a_resealed_event_with_any_field_changed_decodes_or_is_dead_lettered(record: GarbageRecord) -> None:
    """Past the hash check: whatever the model, upcasting and transition checks make of it, nothing raises."""
    item = decode_record(record)
    assert item is None or isinstance(item, Decoded) or assert_dead_letter(record) == item


@settings(max_examples=200, deadline=None)
@given(st.lists(bad_records() | sound_records(), max_size=12))
def test_a_mixed_batch_decodes_without_raising_and_sorts_sound_from_bad(records: list[GarbageRecord]) -> None:
    for record in records:
        if record.kind == "sound":
            assert isinstance(decode_record(record), Decoded)
        else:
            assert_dead_letter(record)
