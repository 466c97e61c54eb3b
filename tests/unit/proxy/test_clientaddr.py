"""Which address is the client's when a load balancer forwards the request."""

from __future__ import annotations

import ipaddress

import pytest

from proxy.clientaddr import client_address

LB = [ipaddress.ip_network("10.0.0.0/8")]


@pytest.mark.parametrize(
    ("peer", "forwarded", "expected"),
    [
        ("10.0.0.5", ["203.0.113.9"], "203.0.113.9"),
        # Each proxy appends what it saw: the right-most untrusted entry is the client; what
        # the client wrote to the left of it is not believed.
        ("10.0.0.5", ["6.6.6.6, 203.0.113.9"], "203.0.113.9"),
        ("10.0.0.5", ["203.0.113.9, 10.0.0.7"], "203.0.113.9"),
        ("10.0.0.5", ["6.6.6.6", "203.0.113.9"], "203.0.113.9"),  # repeated headers, in order
        ("10.0.0.5", ["10.0.0.8, 10.0.0.7"], "10.0.0.8"),  # only proxies: the left-most
        ("10.0.0.5", ["not-an-ip"], "10.0.0.5"),  # malformed: keep the proxy's address
        ("10.0.0.5", ["2001:db8::1"], "2001:db8::1"),
        ("192.0.2.1", ["203.0.113.9"], "192.0.2.1"),  # not from a trusted proxy: ignored
        ("10.0.0.5", [], "10.0.0.5"),
    ],
)
def test_client_address(peer: str, forwarded: list[str], expected: str) -> None:
    assert client_address(peer, forwarded, LB) == expected


def test_no_trusted_proxies_means_the_header_is_never_believed() -> None:
    assert client_address("10.0.0.5", ["203.0.113.9"], []) == "10.0.0.5"
