"""`Authenticator`: which headers and keys get in, how long a verified record is trusted, how often use is recorded."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from services.auth.authenticator import Authenticator, KeyRecord, Unauthenticated
from services.auth.keys import generate, hash_token, parse_key_id
from services.auth.policy import Role
from tests.support.auth import MemoryKeys

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


class Clocks:
    """A monotonic clock and a wall clock that only move when told to."""

    def __init__(self) -> None:
        self.mono = 1000.0
        self.wall = NOW

    def monotonic(self) -> float:
        return self.mono

    def now(self) -> datetime:
        return self.wall

    def advance(self, seconds: float) -> None:
        self.mono += seconds
        self.wall += timedelta(seconds=seconds)


class CountingKeys(MemoryKeys):
    """`MemoryKeys` that counts lookups and can fail to record use."""

    def __init__(self) -> None:
        super().__init__()
        self.finds: list[str] = []
        self.touch_fails = False

    async def find_key(self, key_id: str) -> KeyRecord | None:
        self.finds.append(key_id)
        return await super().find_key(key_id)

    async def touch_key(self, key_id: str, at: datetime) -> None:
        if self.touch_fails:
            raise ConnectionError("database gone")
        await super().touch_key(key_id, at)

    def change(self, token: str, **fields: object) -> None:
        key_id = parse_key_id(token)
        assert key_id is not None
        self.records[key_id] = dataclasses.replace(self.records[key_id], **fields)  # type: ignore[arg-type]


@pytest.fixture
def clocks() -> Clocks:
    return Clocks()


@pytest.fixture
def keys() -> CountingKeys:
    return CountingKeys()


@pytest.fixture
def auth(keys: CountingKeys, clocks: Clocks) -> Authenticator:
    return Authenticator(keys, ttl=0.5, touch_every=60.0, monotonic=clocks.monotonic, now=clocks.now)


async def refused(auth: Authenticator, header: str | None) -> str:
    with pytest.raises(Unauthenticated) as caught:
        await auth.authenticate(header)
    return caught.value.detail


# --- what gets in ----------------------------------------------------------------------------------


async def test_a_good_key_is_its_principal(auth: Authenticator, keys: CountingKeys) -> None:
    token = keys.issue(Role.ORG_ADMIN, "acme", name="acme admin", expires_at=NOW + timedelta(days=1))
    principal = await auth.authenticate(f"Bearer {token}")
    assert (principal.key_id, principal.name, principal.role, principal.org_id) == (
        parse_key_id(token), "acme admin", Role.ORG_ADMIN, "acme")
    assert principal.expires_at == NOW + timedelta(days=1)


@pytest.mark.parametrize("form", ["Bearer {}", "bearer {}", "BEARER {}", "Bearer  {} ", "Bearer {}\t"])
async def test_the_scheme_is_case_insensitive_and_spaces_around_the_key_do_not_matter(
    form: str, auth: Authenticator, keys: CountingKeys
) -> None:
    token = keys.issue(Role.EVALUATOR, "acme")
    assert (await auth.authenticate(form.format(token))).org_id == "acme"


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "Bearer",
        "Bearer ",
        "Basic dXNlcjpwYXNz",
        "Token {token}",
        "{token}",  # no scheme at all
        "Bearer fsk_0123",  # truncated
        "Bearer {token}x",  # one character too many
        "Bearer {token_upper}",  # ids are lower-case hex
        "Bearer {token} {token}",
        "Bearer {token},Bearer {token}",
        "Bearer sk_0123456789abcdef_" + "A" * 43,
        "Bearer fsk_0123456789abcdef_" + "A" * 42 + "!",
        "Bearer {token}\x00",
    ],
)
async def test_malformed_headers_are_refused_without_a_lookup(
    header: str | None, auth: Authenticator, keys: CountingKeys
) -> None:
    token = keys.issue(Role.SYSTEM_ADMIN)
    if header is not None:
        secret = token.split("_", 2)[2]
        header = header.format(token=token, token_upper=f"fsk_ABCDEF0123456789_{secret}")
    await refused(auth, header)
    assert keys.finds == []  # a malformed key never reaches the database


async def test_an_unknown_id_and_a_wrong_secret_read_the_same(auth: Authenticator, keys: CountingKeys) -> None:
    token = keys.issue(Role.SYSTEM_ADMIN)
    stranger = generate().token  # well-formed, never issued
    wrong_secret = token[:-43] + generate().token[-43:]  # a real id with another secret
    assert await refused(auth, f"Bearer {stranger}") == await refused(auth, f"Bearer {wrong_secret}") == (
        "invalid API key"
    )
    assert keys.finds == [parse_key_id(stranger), parse_key_id(token)]


async def test_the_secret_hash_is_what_is_compared(auth: Authenticator, keys: CountingKeys) -> None:
    token = keys.issue(Role.SYSTEM_ADMIN)
    keys.change(token, secret_hash=hash_token(token + "x"))  # the row of another key with this id
    assert await refused(auth, f"Bearer {token}") == "invalid API key"


async def test_a_revoked_key_is_refused(auth: Authenticator, keys: CountingKeys, clocks: Clocks) -> None:
    token = keys.issue(Role.SYSTEM_ADMIN)
    keys.change(token, revoked_at=NOW - timedelta(seconds=1))
    assert await refused(auth, f"Bearer {token}") == "this API key has been revoked"


async def test_a_revocation_stamped_by_a_clock_ahead_of_ours_counts_at_once(
    auth: Authenticator, keys: CountingKeys
) -> None:
    """Replicas' clocks disagree: the revocation is the fact, not its timestamp."""
    token = keys.issue(Role.SYSTEM_ADMIN)
    keys.change(token, revoked_at=NOW + timedelta(seconds=30))
    assert await refused(auth, f"Bearer {token}") == "this API key has been revoked"


@pytest.mark.parametrize("expires_in", [timedelta(0), -timedelta(microseconds=1), -timedelta(days=3)])
async def test_an_expired_key_is_refused(
    expires_in: timedelta, auth: Authenticator, keys: CountingKeys
) -> None:
    token = keys.issue(Role.AUDITOR, expires_at=NOW + expires_in)
    assert await refused(auth, f"Bearer {token}") == "this API key has expired"


async def test_a_key_stops_working_the_moment_it_expires(
    auth: Authenticator, keys: CountingKeys, clocks: Clocks
) -> None:
    token = keys.issue(Role.AUDITOR, expires_at=NOW + timedelta(seconds=10))
    await auth.authenticate(f"Bearer {token}")
    clocks.wall += timedelta(seconds=10)  # the record is still cached: expiry is checked on every request
    assert await refused(auth, f"Bearer {token}") == "this API key has expired"


async def test_no_refusal_names_the_key(auth: Authenticator, keys: CountingKeys) -> None:
    token = keys.issue(Role.SYSTEM_ADMIN)
    keys.change(token, revoked_at=NOW)
    for header in (f"Bearer {token}", f"Bearer {token}x", f"Bearer {generate().token}"):
        detail = await refused(auth, header)
        assert token[4:] not in detail and (parse_key_id(token) or "") not in detail


# --- the cache ----------------------------------------------------------------------------------------


async def test_a_verified_record_is_reused_for_ttl_then_read_again(
    auth: Authenticator, keys: CountingKeys, clocks: Clocks
) -> None:
    token = keys.issue(Role.EVALUATOR, "acme")
    for _ in range(5):
        await auth.authenticate(f"Bearer {token}")
    assert len(keys.finds) == 1
    clocks.advance(0.49)
    await auth.authenticate(f"Bearer {token}")
    assert len(keys.finds) == 1
    clocks.advance(0.02)
    await auth.authenticate(f"Bearer {token}")
    assert len(keys.finds) == 2


async def test_a_revocation_is_seen_once_the_ttl_has_passed(
    auth: Authenticator, keys: CountingKeys, clocks: Clocks
) -> None:
    token = keys.issue(Role.SYSTEM_ADMIN)
    await auth.authenticate(f"Bearer {token}")
    keys.change(token, revoked_at=clocks.now())  # written by another replica
    clocks.advance(0.25)
    await auth.authenticate(f"Bearer {token}")  # within the ttl: the cached record still answers
    clocks.advance(0.25)
    assert await refused(auth, f"Bearer {token}") == "this API key has been revoked"


async def test_an_expiry_change_is_seen_once_the_ttl_has_passed(
    auth: Authenticator, keys: CountingKeys, clocks: Clocks
) -> None:
    token = keys.issue(Role.SYSTEM_ADMIN)
    await auth.authenticate(f"Bearer {token}")
    keys.change(token, expires_at=clocks.now())
    clocks.advance(0.5)
    assert await refused(auth, f"Bearer {token}") == "this API key has expired"


async def test_an_unknown_id_is_remembered_for_ttl_too(
    auth: Authenticator, keys: CountingKeys, clocks: Clocks
) -> None:
    stranger = generate().token
    for _ in range(10):
        await refused(auth, f"Bearer {stranger}")
    assert len(keys.finds) == 1  # a prober repeating one id costs one lookup per ttl
    clocks.advance(0.5)
    await refused(auth, f"Bearer {stranger}")
    assert len(keys.finds) == 2


async def test_with_no_ttl_every_request_reads_the_record(keys: CountingKeys, clocks: Clocks) -> None:
    auth = Authenticator(keys, ttl=0.0, monotonic=clocks.monotonic, now=clocks.now)
    token = keys.issue(Role.SYSTEM_ADMIN)
    await auth.authenticate(f"Bearer {token}")
    keys.change(token, revoked_at=NOW)
    assert await refused(auth, f"Bearer {token}") == "this API key has been revoked"


# --- recording use ---------------------------------------------------------------------------------------


async def settle() -> None:
    for _ in range(3):
        await asyncio.sleep(0)


async def test_last_use_is_recorded_at_most_once_per_interval(
    auth: Authenticator, keys: CountingKeys, clocks: Clocks
) -> None:
    token, other = keys.issue(Role.SYSTEM_ADMIN), keys.issue(Role.AUDITOR)
    for _ in range(20):
        await auth.authenticate(f"Bearer {token}")
        clocks.advance(1.0)
    await auth.authenticate(f"Bearer {other}")
    await settle()
    assert keys.touched == [parse_key_id(token), parse_key_id(other)]
    clocks.advance(40.0)  # 60 s after the first use of `token`
    await auth.authenticate(f"Bearer {token}")
    await settle()
    assert keys.touched.count(parse_key_id(token)) == 2


async def test_refused_keys_are_never_recorded_as_used(auth: Authenticator, keys: CountingKeys) -> None:
    token = keys.issue(Role.SYSTEM_ADMIN)
    keys.change(token, revoked_at=NOW)
    await refused(auth, f"Bearer {token}")
    await settle()
    assert keys.touched == []


async def test_failing_to_record_use_never_fails_the_request(
    auth: Authenticator, keys: CountingKeys, caplog: pytest.LogCaptureFixture
) -> None:
    keys.touch_fails = True
    token = keys.issue(Role.SYSTEM_ADMIN)
    assert (await auth.authenticate(f"Bearer {token}")).role is Role.SYSTEM_ADMIN
    await settle()
    assert "could not record last use" in caplog.text


# --- the verified-header fast path and shared lookups ----------------------------------------------------


async def test_a_verified_header_is_trusted_until_its_record_expires_from_the_cache(
    auth: Authenticator, keys: CountingKeys, clocks: Clocks
) -> None:
    token = keys.issue(Role.EVALUATOR, "acme")
    header = f"Bearer {token}"
    first = await auth.authenticate(header)
    assert await auth.authenticate(header) is first  # no re-parse, no re-hash, no lookup
    assert len(keys.finds) == 1
    keys.change(token, revoked_at=NOW)
    clocks.advance(0.49)
    assert await auth.authenticate(header) is first
    clocks.advance(0.02)  # the record is 0.51 s old: fetched again, revocation seen
    assert await refused(auth, header) == "this API key has been revoked"
    assert len(keys.finds) == 2


async def test_a_verified_header_still_expires_on_time(auth: Authenticator, keys: CountingKeys, clocks: Clocks) -> None:
    token = keys.issue(Role.EVALUATOR, "acme", expires_at=NOW + timedelta(seconds=0.3))
    await auth.authenticate(f"Bearer {token}")
    clocks.advance(0.3)
    assert await refused(auth, f"Bearer {token}") == "this API key has expired"


async def test_concurrent_misses_for_one_key_share_one_lookup(auth: Authenticator, keys: CountingKeys) -> None:
    token = keys.issue(Role.EVALUATOR, "acme")
    gate = asyncio.Event()
    plain_find = keys.find_key

    async def slow_find(key_id: str) -> KeyRecord | None:
        await gate.wait()
        return await plain_find(key_id)

    keys.find_key = slow_find  # type: ignore[method-assign]
    calls = [asyncio.create_task(auth.authenticate(f"Bearer {token}")) for _ in range(16)]
    await asyncio.sleep(0)
    gate.set()
    principals = await asyncio.gather(*calls)
    assert {p.key_id for p in principals} == {parse_key_id(token)}
    assert len(keys.finds) == 1


async def test_a_failed_shared_lookup_fails_every_waiter_and_the_next_call_retries(
    auth: Authenticator, keys: CountingKeys
) -> None:
    token = keys.issue(Role.EVALUATOR, "acme")
    plain_find = keys.find_key
    gate = asyncio.Event()

    async def broken_find(key_id: str) -> KeyRecord | None:
        await gate.wait()
        raise ConnectionError("database gone")

    keys.find_key = broken_find  # type: ignore[method-assign]
    calls = [asyncio.create_task(auth.authenticate(f"Bearer {token}")) for _ in range(3)]
    await asyncio.sleep(0)
    gate.set()
    outcomes = await asyncio.gather(*calls, return_exceptions=True)
    assert all(isinstance(o, ConnectionError) for o in outcomes)
    keys.find_key = plain_find  # type: ignore[method-assign]
    assert (await auth.authenticate(f"Bearer {token}")).org_id == "acme"


# --- reading a key in use again ahead of its expiry (refresh_after) ----------------------------------------


@pytest.fixture
def refreshing(keys: CountingKeys, clocks: Clocks) -> Authenticator:
    return Authenticator(keys, ttl=0.5, refresh_after=0.25, monotonic=clocks.monotonic, now=clocks.now)


async def test_a_key_in_use_is_read_again_in_the_background_and_its_requests_never_wait(
    refreshing: Authenticator, keys: CountingKeys, clocks: Clocks
) -> None:
    token = keys.issue(Role.EVALUATOR, "acme")
    header = f"Bearer {token}"
    await refreshing.authenticate(header)
    gate = asyncio.Event()
    plain_find = keys.find_key

    asked: list[str] = []

    async def slow_find(key_id: str) -> KeyRecord | None:
        asked.append(key_id)
        await gate.wait()
        return await plain_find(key_id)

    keys.find_key = slow_find  # type: ignore[method-assign]
    clocks.advance(0.3)  # past refresh_after, within the ttl
    for _ in range(5):  # answered at once, while one read is in flight
        assert (await asyncio.wait_for(refreshing.authenticate(header), 0.1)).key_id == parse_key_id(token)
    await settle()
    assert len(asked) == 1  # one read again for all five
    gate.set()
    await settle()
    keys.find_key = plain_find  # type: ignore[method-assign]
    assert len(keys.finds) == 2
    clocks.advance(0.4)  # 0.7 s after the first read, 0.4 s after the second: still trusted, no read
    await refreshing.authenticate(header)
    await settle()
    assert len(keys.finds) == 3  # ...but past refresh_after again: read again, in the background


async def test_a_revocation_read_in_the_background_refuses_the_next_request(
    refreshing: Authenticator, keys: CountingKeys, clocks: Clocks
) -> None:
    token = keys.issue(Role.EVALUATOR, "acme")
    header = f"Bearer {token}"
    await refreshing.authenticate(header)
    keys.change(token, revoked_at=NOW)
    clocks.advance(0.3)
    await refreshing.authenticate(header)  # still within the ttl of the record it was verified against
    await settle()
    assert await refused(refreshing, header) == "this API key has been revoked"


async def test_a_failed_background_read_fails_no_request_and_the_ttl_still_holds(
    refreshing: Authenticator, keys: CountingKeys, clocks: Clocks, caplog: pytest.LogCaptureFixture
) -> None:
    token = keys.issue(Role.EVALUATOR, "acme")
    header = f"Bearer {token}"
    await refreshing.authenticate(header)
    plain_find = keys.find_key

    async def broken_find(key_id: str) -> KeyRecord | None:
        raise ConnectionError("database gone")

    keys.find_key = broken_find  # type: ignore[method-assign]
    clocks.advance(0.3)
    await refreshing.authenticate(header)
    await settle()
    assert "could not read key" in caplog.text
    keys.find_key = plain_find  # type: ignore[method-assign]
    keys.change(token, revoked_at=NOW)
    clocks.advance(0.21)  # the verified record is now older than the ttl: the request reads it itself
    assert await refused(refreshing, header) == "this API key has been revoked"
