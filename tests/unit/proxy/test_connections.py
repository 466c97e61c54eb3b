"""Connection caps per address and in all (``proxy/connections.py``)."""

from __future__ import annotations

import ipaddress
import json

from config.settings import ConnectionSettings
from oci.errors import Code, OCIError
from proxy.connections import ConnectionLimits, refusal_bytes

SETTINGS = ConnectionSettings(max_per_address=2, max_total=5)
PROXY = ipaddress.ip_network("10.0.0.0/8")


def test_per_address_then_total() -> None:
    limits = ConnectionLimits(SETTINGS, [PROXY])
    assert limits.admit("192.0.2.1") is None
    assert limits.admit("192.0.2.1") is None
    refused = limits.admit("192.0.2.1")
    assert refused is not None and refused.limit == "per-address"
    assert refused.failure.code is Code.TOO_MANY_REQUESTS
    assert limits.admit("192.0.2.2") is None
    assert limits.open == 3
    limits.release("192.0.2.1")
    assert limits.admit("192.0.2.1") is None  # a slot of its own freed
    # A trusted proxy carries many clients: only the total counts for it.
    assert limits.admit("10.1.2.3") is None
    assert limits.admit("10.1.2.3") is None  # beyond the per-address cap, and admitted
    total = limits.admit("10.1.2.3")
    assert total is not None and total.limit == "total"
    assert total.failure.code is Code.CONNECTIONS_EXHAUSTED
    assert limits.admit("192.0.2.9") is not None  # nobody gets in now
    limits.release("10.1.2.3")
    assert limits.admit("192.0.2.9") is None


def test_an_unknown_peer_counts_only_in_the_total() -> None:
    limits = ConnectionLimits(ConnectionSettings(max_per_address=1, max_total=2), [])
    assert limits.admit(None) is None and limits.admit(None) is None
    assert limits.admit(None) is not None


def test_refusal_bytes_are_a_whole_answer() -> None:
    failure = OCIError(
        Code.TOO_MANY_REQUESTS, "slow down", {"limit": 2}, headers={"Retry-After": "1"}
    )
    raw = refusal_bytes(failure, "abc")
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    assert lines[0] == "HTTP/1.1 429 Too Many Requests"
    assert f"Content-Length: {len(body)}" in lines and "Connection: close" in lines
    assert "X-Request-Id: abc" in lines and "Retry-After: 1" in lines
    assert json.loads(body) == {
        "errors": [{"code": "TOOMANYREQUESTS", "message": "slow down", "detail": {"limit": 2}}]
    }
