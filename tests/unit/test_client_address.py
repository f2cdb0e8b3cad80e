"""The client address limits are counted against: the peer, or X-Forwarded-For behind a trusted proxy."""

from __future__ import annotations

import ipaddress

import pytest

from support.errors import ConfigurationError
from support.ratelimit import client_address, limit_subject, limits_uri

TRUSTED = [ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("2001:db8:ffff::/48")]


def test_a_direct_client_is_its_peer_and_its_forwarded_header_is_ignored() -> None:
    assert client_address("203.0.113.9", ["198.51.100.1"], TRUSTED) == "203.0.113.9"


def test_behind_a_trusted_proxy_the_client_is_the_last_hop_the_proxy_saw() -> None:
    # The client wrote "1.1.1.1" itself; the proxy appended the address it really saw.
    assert client_address("10.0.0.5", ["1.1.1.1, 203.0.113.9"], TRUSTED) == "203.0.113.9"


def test_trusted_hops_are_skipped_from_the_right_across_header_lines() -> None:
    forwarded = ["6.6.6.6, 203.0.113.9", "10.1.2.3", "10.9.9.9"]
    assert client_address("10.0.0.5", forwarded, TRUSTED) == "203.0.113.9"


def test_when_every_hop_is_trusted_the_left_most_is_the_client() -> None:
    assert client_address("10.0.0.5", ["10.1.1.1, 10.2.2.2"], TRUSTED) == "10.1.1.1"


def test_a_trusted_proxy_without_a_forwarded_header_is_the_client() -> None:
    assert client_address("10.0.0.5", [], TRUSTED) == "10.0.0.5"


def test_an_unparsable_hop_ends_the_walk_at_the_last_trusted_address() -> None:
    assert client_address("10.0.0.5", ["203.0.113.9, not-an-ip, 10.7.7.7"], TRUSTED) == "10.7.7.7"


def test_hops_with_ports_and_ipv4_mapped_peers_are_understood() -> None:
    assert client_address("::ffff:10.0.0.5", ["[2001:db8::1]:4711"], TRUSTED) == "2001:db8::1"
    assert client_address("10.0.0.5", ["203.0.113.9:51000"], TRUSTED) == "203.0.113.9"


def test_ipv6_clients_are_counted_per_64_and_ipv4_per_address() -> None:
    same_host = limit_subject("2001:db8:1:2:aaaa::1"), limit_subject("2001:db8:1:2:bbbb::2")
    assert same_host == ("2001:db8:1:2::/64", "2001:db8:1:2::/64")
    assert limit_subject("203.0.113.9") == "203.0.113.9"


@pytest.mark.parametrize(
    ("url", "uri"),
    [
        ("redis://localhost:6379/0", "async+redis://localhost:6379/0"),
        ("rediss://:pw@cache.internal:6380", "async+rediss://:pw@cache.internal:6380"),
        (
            "unix:///var/lib/switchboard/redis/redis.sock",
            "async+redis+unix:///var/lib/switchboard/redis/redis.sock",
        ),
    ],
)
def test_redis_urls_map_to_the_limits_storage_schemes(url: str, uri: str) -> None:
    assert limits_uri(url) == uri


def test_an_unknown_redis_scheme_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError):
        limits_uri("memcached://localhost:11211")
