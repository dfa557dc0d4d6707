"""Where a delivery may go: never to a private, loopback or link-local address unless a setting allows the host.

The host is resolved once and every address it resolves to is checked; the request then goes to
the checked address (the host name kept for TLS and the Host header), so a second lookup cannot
answer differently (DNS rebinding).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

__all__ = ["AddressGuard", "Refused", "Target", "Unresolved"]

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Awaitable[list[str]]]


class Refused(Exception):
    """The destination's address is not one the notifier may send to (retrying will not change that)."""


class Unresolved(Exception):
    """The host name does not resolve now (it may later)."""


@dataclass(frozen=True, slots=True)
class Target:
    """A checked destination: connect to `url` (the address), present `name` (TLS SNI) and `host_header`."""

    url: str
    name: str
    host_header: str  # the name, bracketed if IPv6, with the port when the URL names one


async def system_resolver(host: str, port: int) -> list[str]:
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise Unresolved(f"cannot resolve {host}: {exc.strerror}") from exc
    return [str(info[4][0]) for info in infos]


def forbidden(address: IpAddress) -> bool:
    """Private, loopback, link-local, multicast, reserved, unspecified: anything that is not the public internet."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return not address.is_global or address.is_multicast


class AddressGuard:
    """Checks a destination URL; `allow_hosts` names hosts (or addresses) exempt from the address rule."""

    def __init__(self, allow_hosts: Iterable[str] = (), resolve: Resolver = system_resolver) -> None:
        self._allowed = frozenset(h.strip().lower().strip("[]") for h in allow_hosts if h.strip())
        self._resolve = resolve

    async def check(self, url: str) -> Target:
        """The address to send to; `Refused` or `Unresolved` when there is none."""
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        if not host:
            raise Refused("the URL names no host")
        if parts.username is not None or parts.password is not None:
            raise Refused("the URL carries credentials; a webhook secret signs deliveries instead")
        allowed_host = host in self._allowed
        if parts.scheme != "https" and not (parts.scheme == "http" and allowed_host):
            raise Refused(f"{parts.scheme or 'no'} scheme: destinations are https (http only for allowed hosts)")
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError as exc:
            raise Refused("the URL's port is not a number in range") from exc
        addresses = await self._resolve(host, port)
        if not addresses:
            raise Unresolved(f"{host} resolves to no address")
        for text in addresses:
            address = ipaddress.ip_address(text.split("%", 1)[0])
            if forbidden(address) and not (allowed_host or str(address) in self._allowed):
                raise Refused(f"{host} resolves to {address}, a private, loopback or link-local address")
        chosen = ipaddress.ip_address(addresses[0].split("%", 1)[0])
        literal = f"[{chosen}]" if chosen.version == 6 else str(chosen)
        netloc = f"{literal}:{parts.port}" if parts.port else literal
        shown = f"[{host}]" if ":" in host else host
        return Target(parts._replace(netloc=netloc).geturl(), host, f"{shown}:{parts.port}" if parts.port else shown)
