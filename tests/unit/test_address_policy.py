"""The address policy of connectors in both modes: every spelling of a cloud metadata,
link-local or unspecified address is refused, also where private addresses are allowed."""

from __future__ import annotations

import ipaddress

import pytest

from shared.addresses import AddressPolicy, IPAddress, Refused, unreachable
from shared.connectors import ConnectorType, destination_refusal, parse_config

STRICT = AddressPolicy(allow_private=False)
LOCAL = AddressPolicy(allow_private=True)

# 169.254.169.254 (and its neighbours) as a URL host may spell it; each resolves to an
# address no mode may reach.
SPELLINGS = [
    "169.254.169.254",
    "2852039166",  # decimal
    "0251.0376.0251.0376",  # octal
    "0xa9fea9fe",  # hex
    "0xA9.0xFE.0xA9.0xFE",
    "0xa9.254.0251.254",  # mixed
    "169.254.43518",  # a.b.c with the last two bytes as one number
    "169.16689662",  # a.b with the last three bytes as one number
    "::ffff:169.254.169.254",  # IPv4-mapped IPv6
    "[::ffff:a9fe:a9fe]",
    "::ffff:0:a9fe:a9fe",  # IPv4-translated
    "64:ff9b::a9fe:a9fe",  # NAT64
    "2002:a9fe:a9fe::1",  # 6to4
    "fd00:ec2::254",  # AWS's IPv6 metadata service
    "[fd00:ec2::254]",
    "100.100.100.200",  # Alibaba's metadata service
    "fe80::a9fe:a9fe",
    "fe80::1%1",
    "169.254.0.1",
    "0.0.0.0",
    "0",
    "0x0",
    "0.1.2.3",  # "this network"
    "::",
    "[::]",
    "::ffff:0.0.0.0",
    "224.0.0.251",
    "ff02::1",
    "255.255.255.255",
    "240.0.0.1",
]


@pytest.mark.parametrize("policy", [STRICT, LOCAL], ids=["strict", "local"])
@pytest.mark.parametrize("host", SPELLINGS)
async def test_every_spelling_of_metadata_and_link_local_is_refused_in_both_modes(
    policy: AddressPolicy, host: str
) -> None:
    with pytest.raises(Refused):
        await policy.vetted(host, 80)


@pytest.mark.parametrize("policy", [STRICT, LOCAL], ids=["strict", "local"])
@pytest.mark.parametrize(
    ("kind", "config"),
    [
        ("sms_http", {"url": "http://2852039166/latest/meta-data/"}),
        ("push_http", {"url": "http://0xa9fea9fe/latest"}),
        ("webhook", {"url": "http://[fd00:ec2::254]/", "secret": "s" * 24}),
        ("webhook", {"url": "https://[::ffff:169.254.169.254]:443/", "secret": "s" * 24}),
        ("smtp", {"host": "0251.0376.0251.0376", "port": 25, "from": "a@example.com"}),
        ("smtp", {"host": "0.0.0.0", "port": 25, "from": "a@example.com"}),
    ],
)
async def test_a_connector_config_naming_them_is_refused(
    policy: AddressPolicy, kind: str, config: dict[str, object]
) -> None:
    why = await destination_refusal(parse_config(ConnectorType(kind), config), policy)
    assert why is not None
    assert "link-local" in why or "metadata" in why or "unspecified" in why


@pytest.mark.parametrize(
    "address", ["127.0.0.1", "127.9.9.9", "::1", "10.1.2.3", "172.20.0.5", "192.168.1.10",
                "100.64.0.7", "fd12:3456::1", "::ffff:192.168.0.1"],
)  # fmt: skip
def test_the_local_mode_allows_loopback_and_private_ranges_only_there(address: str) -> None:
    ip: IPAddress = ipaddress.ip_address(address)
    assert unreachable(ip, allow_private=True) is None
    assert unreachable(ip, allow_private=False) is not None


@pytest.mark.parametrize(
    "address", ["192.0.2.1", "198.18.0.1", "203.0.113.9", "2001:db8::1", "0.0.0.1"]
)
def test_documentation_and_benchmark_ranges_are_not_private_for_the_local_mode(
    address: str,
) -> None:
    assert unreachable(ipaddress.ip_address(address), allow_private=True) is not None


async def test_a_name_with_one_refused_address_is_refused_whole() -> None:
    answers = [ipaddress.ip_address("93.184.216.34"), ipaddress.ip_address("169.254.169.254")]

    async def lookup(host: str, port: int | None) -> list[IPAddress]:
        return answers

    for allow_private in (False, True):
        policy = AddressPolicy(allow_private=allow_private, lookup=lookup)
        with pytest.raises(Refused, match=r"shop\.example \(169\.254\.169\.254\)"):
            await policy.vetted("shop.example", 443)


async def test_public_addresses_pass_in_both_modes() -> None:
    for policy in (STRICT, LOCAL):
        assert await policy.vetted("93.184.216.34", 443) == [ipaddress.ip_address("93.184.216.34")]
