"""Which network addresses a connector may reach: public ones only, unless the deployment
allows private ones (``WAYPOST_ALLOW_PRIVATE_CONNECTORS``, on under ``waypost up``), and
then also loopback and the private ranges, never more.

A connector's URL or SMTP host is chosen by a workspace admin, and the designer and the
activator then connect to it from inside the deployment. Without this check a connector
pointed at ``127.0.0.1``, ``10.0.0.5`` or ``169.254.169.254`` would make Waypost a proxy
into the private network (the connector test even reports what answered). Link-local,
unspecified, multicast, reserved and cloud metadata addresses are refused in every mode:
no local sink lives there, and the metadata service hands out the host's credentials.

The designer checks on save; the activator resolves a name once per connection, vets every
address of the answer and connects only to those (``AddressPolicy.vetted``, used by the
HTTP connector of ``shared.http`` and the SMTP sockets of the senders), so a name whose
answer flips between a check and the connection (DNS rebinding) cannot slip through.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Longest a name lookup may take before the destination counts as unreachable.
RESOLVE_TIMEOUT_S = 5.0
# 64:ff9b::/96 carries an IPv4 address for a NAT64 gateway to reach.
NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
# 100.64.0.0/10 (carrier-grade NAT) is neither private nor global in Python's tables.
SHARED = ipaddress.IPv4Network("100.64.0.0/10")
# What the local mode adds to the public addresses: the private ranges a sink may live in
# (loopback is the other). Python's ``is_private`` also covers 0.0.0.0/8, documentation,
# benchmarking and reserved ranges: none of those is a place a local sink answers.
LOCAL_RANGES = tuple(
    ipaddress.ip_network(n)
    for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fc00::/7")
)
# Cloud instance metadata services outside link-local space (AWS's IPv6 one, Alibaba's):
# refused in every mode, like 169.254.169.254 itself.
METADATA = frozenset(ipaddress.ip_address(a) for a in ("fd00:ec2::254", "100.100.100.200"))


class Unresolvable(Exception):
    """The destination's name could not be resolved (now; it may resolve later)."""


class Refused(Exception):
    """The destination is, or resolves to, an address the policy does not let us reach.
    Not an ``OSError``: it must never pass for a network failure worth retrying."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def embedded_ipv4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for (mapped, 6to4, NAT64), if any."""
    if isinstance(ip, ipaddress.IPv4Address):
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def non_public(ip: IPAddress) -> str | None:
    """Why ``ip`` is not a public unicast address ("loopback", "private", ...), or None."""
    inner = embedded_ipv4(ip)
    if inner is not None:
        return non_public(inner)
    checks = (
        ("unspecified", ip.is_unspecified),
        ("loopback", ip.is_loopback),
        ("link-local", ip.is_link_local),
        ("multicast", ip.is_multicast),
        ("private", ip.is_private or (isinstance(ip, ipaddress.IPv4Address) and ip in SHARED)),
        ("reserved", ip.is_reserved),
    )
    for reason, hit in checks:
        if hit:
            return reason
    return None if ip.is_global else "not public"


def literal(host: str) -> IPAddress | None:
    """``host`` as an IP address when it is written as one (brackets allowed)."""
    try:
        return ipaddress.ip_address(host.strip("[]").split("%")[0])
    except ValueError:
        return None


async def resolve(host: str, port: int | None = None) -> list[IPAddress]:
    """Every address ``host`` resolves to (a literal is its own answer)."""
    found = literal(host)
    if found is not None:
        return [found]
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(RESOLVE_TIMEOUT_S):
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, TimeoutError, UnicodeError) as exc:
        raise Unresolvable(f"{host} does not resolve: {exc or type(exc).__name__}") from None
    addresses = {ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos}
    return sorted(addresses, key=lambda a: (a.version, int(a)))


def refusal(host: str, addresses: list[IPAddress]) -> str | None:
    """Why a destination with these addresses is refused when only public ones may be
    reached, or None."""
    return AddressPolicy().refusal(host, addresses)


def unreachable(ip: IPAddress, allow_private: bool) -> str | None:
    """Why ``ip`` may not be reached under the mode, or None. With ``allow_private`` (the
    local mode) loopback and :data:`LOCAL_RANGES` pass too; metadata addresses never do."""
    inner = embedded_ipv4(ip)
    if inner is not None:
        return unreachable(inner, allow_private)
    if ip in METADATA:
        return "cloud metadata"
    why = non_public(ip)
    if why is None or not allow_private:
        return why
    if why == "loopback" or (why == "private" and any(ip in net for net in LOCAL_RANGES)):
        return None
    return why


Lookup = Callable[[str, int | None], Awaitable[list[IPAddress]]]


@dataclass(frozen=True)
class AddressPolicy:
    """Where connectors may connect: public addresses, plus loopback and the private ranges
    when ``allow_private``. ``lookup`` resolves a name (tests give their own resolver)."""

    allow_private: bool = False
    lookup: Lookup | None = None

    def refusal(self, host: str, addresses: list[IPAddress]) -> str | None:
        """Why a destination with these addresses is refused, or None when all may be
        reached: one address the policy refuses refuses the name."""
        for ip in addresses:
            why = unreachable(ip, self.allow_private)
            if why is not None:
                shown = host if literal(host) else f"{host} ({ip})"
                if self.allow_private:
                    return (
                        f"{shown} is not a permitted address ({why}); connectors reach "
                        "public, loopback and private ones only"
                    )
                return f"{shown} is not a public address ({why}); connectors reach public ones only"
        return None

    async def vetted(self, host: str, port: int | None = None) -> list[IPAddress]:
        """Every address of ``host``, resolved once here, after each has been checked: the
        caller connects to these and no other. Raises ``Refused`` or ``Unresolvable``."""
        addresses = await (self.lookup or resolve)(host, port)
        if not addresses:
            raise Unresolvable(f"{host} does not resolve")
        why = self.refusal(host, addresses)
        if why is not None:
            raise Refused(why)
        return addresses
