"""Behind a load balancer, the access log and throttles see the client, not the balancer."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.support.gatekeeper import make_gatekeeper
from tests.support.registry import Registry


def test_forwarded_for_is_believed_only_from_trusted_proxies(
    registry: Registry, tmp_path: Path
) -> None:
    trusting = make_gatekeeper(
        tmp_path / "trusting",
        registry.url,
        extra_env={"GATEKEEPER_TRUSTED_PROXIES": '["127.0.0.0/8"]'},
    )
    plain = make_gatekeeper(tmp_path / "plain", registry.url)
    try:
        spoof = {"X-Forwarded-For": "198.51.100.7, 203.0.113.9"}
        for gk in (trusting, plain):
            assert httpx.get(f"{gk.url}/v2/", headers=spoof).status_code in (200, 401)
        # The right-most entry a trusted proxy appended is the client.
        assert trusting.wait_audit(1, "client_addr = '203.0.113.9'")
        # Without trusted proxies a client cannot pick the address it is logged under.
        assert plain.wait_audit(1, "client_addr = '127.0.0.1'")
        assert not plain.audit_rows("client_addr <> '127.0.0.1'")
    finally:
        trusting.stop()
        plain.stop()
