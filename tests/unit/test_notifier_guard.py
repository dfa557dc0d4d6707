"""The notifier's address guard: every address a host resolves to is checked, unless the allowlist names it."""

from __future__ import annotations

import pytest

from services.notifier.guard import AddressGuard, Refused, Unresolved


def resolving(*addresses: str):  # type: ignore[no-untyped-def]
    async def resolve(host: str, port: int) -> list[str]:
        return list(addresses)

    return resolve


@pytest.mark.parametrize(
    "address",
    ["10.1.2.3", "172.16.0.9", "192.168.1.1", "127.0.0.1", "169.254.169.254", "0.0.0.0", "100.64.0.1",
     "::1", "fe80::1", "fc00::1", "::ffff:127.0.0.1", "224.0.0.1"],
)
async def test_private_loopback_and_link_local_addresses_are_refused(address: str) -> None:
    with pytest.raises(Refused, match="private, loopback or link-local"):
        await AddressGuard(resolve=resolving(address)).check("https://hooks.example/x")


async def test_one_private_address_among_public_ones_is_enough_to_refuse() -> None:
    with pytest.raises(Refused):
        await AddressGuard(resolve=resolving("93.184.215.14", "10.0.0.1")).check("https://hooks.example/x")


async def test_a_public_address_is_where_the_request_goes_with_the_name_kept_for_tls() -> None:
    target = await AddressGuard(resolve=resolving("93.184.215.14")).check("https://Hooks.Example:8443/a?b=1")
    assert (target.url, target.name, target.host_header) == ("https://93.184.215.14:8443/a?b=1", "hooks.example",
                                                             "hooks.example:8443")
    v6 = await AddressGuard(resolve=resolving("2606:2800:220:1::1")).check("https://hooks.example/a")
    assert v6.url == "https://[2606:2800:220:1::1]/a"


async def test_the_allowlist_exempts_a_named_host_or_address_and_permits_plain_http_to_a_named_host() -> None:
    local = resolving("127.0.0.1")
    assert (await AddressGuard(["LOCALHOST"], local).check("http://localhost:9/x")).url == "http://127.0.0.1:9/x"
    assert (await AddressGuard(["127.0.0.1"], local).check("https://localhost/x")).name == "localhost"
    with pytest.raises(Refused, match="http scheme"):
        await AddressGuard(["127.0.0.1"], local).check("http://localhost/x")


@pytest.mark.parametrize(
    ("url", "why"),
    [("ftp://hooks.example/x", "ftp scheme"), ("https:///x", "no host"),
     ("https://user:pw@hooks.example/x", "credentials"), ("https://hooks.example:99999/x", "port")],
)
async def test_urls_that_are_not_plain_https_destinations_are_refused(url: str, why: str) -> None:
    with pytest.raises(Refused, match=why):
        await AddressGuard(resolve=resolving("93.184.215.14")).check(url)


async def test_a_host_that_does_not_resolve_is_unresolved_not_refused() -> None:
    with pytest.raises(Unresolved):
        await AddressGuard(resolve=resolving()).check("https://hooks.example/x")
    with pytest.raises(Unresolved):
        await AddressGuard().check("https://no-such-host.invalid/x")
