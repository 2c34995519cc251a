"""Which network addresses a connector may reach: public ones only, unless the deployment
allows private ones (``WAYPOST_ALLOW_PRIVATE_CONNECTORS``, on under ``waypost up``).

A connector's URL or SMTP host is chosen by a workspace admin, and the designer and the
activator then connect to it from inside the deployment. Without this check a connector
pointed at ``127.0.0.1``, ``10.0.0.5`` or ``169.254.169.254`` would make Waypost a proxy
into the private network (the connector test even reports what answered). The designer
checks on save and the activator on every send, both after resolving the name, so a name
that later starts resolving to a private address is refused too.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Longest a name lookup may take before the destination counts as unreachable.
RESOLVE_TIMEOUT_S = 5.0
# 64:ff9b::/96 carries an IPv4 address for a NAT64 gateway to reach.
NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
# 100.64.0.0/10 (carrier-grade NAT) is neither private nor global in Python's tables.
SHARED = ipaddress.IPv4Network("100.64.0.0/10")


class Unresolvable(Exception):
    """The destination's name could not be resolved (now; it may resolve later)."""


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
    """Why a destination with these addresses is refused, or None when all are public."""
    for ip in addresses:
        why = non_public(ip)
        if why is not None:
            shown = host if literal(host) else f"{host} ({ip})"
            return f"{shown} is not a public address ({why}); connectors reach public ones only"
    return None
