"""Advisory import end to end: an image holding Debian 12's real ``cryptography`` 38.0.4
dist-info passes while the advisory store is empty; ``gatekeeper advisories import`` of the real
PyPA records re-evaluates only that image from its stored inventory, which is then quarantined
with the advisory id in the denial, and nothing is read from the upstream again (seen on a
wiretap)."""

from __future__ import annotations

import json
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.gatekeeper import Gatekeeper, make_gatekeeper, run_cli, wait_state
from tests.support.layers import config_for, layer
from tests.support.ocihttp import OCI_MANIFEST, push_image
from tests.support.registry import Registry
from tests.support.tap import Tap, layer_reads
from tests.support.testdata import OSV_PYPI

DIST = Path("/usr/lib/python3/dist-packages/cryptography-38.0.4.dist-info")
RECORDS = OSV_PYPI
ADVISORY = "PYSEC-2023-254"  # cryptography >= 3.1, < 41.0.6; CVSS 7.5 (HIGH)

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.testdata,
    pytest.mark.skipif(not DIST.exists(), reason="needs Debian 12's python3-cryptography"),
]


@pytest.fixture(scope="module")
def tapped(
    registry: Registry, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Gatekeeper, Tap]]:
    tap = Tap(registry.port)
    env = {
        "GATEKEEPER_POLICIES": json.dumps(
            [
                {
                    "name": "vulns",
                    "repositories": ["vuln/*"],
                    "require": ["inventory", "vulnerabilities"],
                    "severity_threshold": "high",
                }
            ]
        ),
        "GATEKEEPER_VERIFIERS": json.dumps({"inventory": {}, "vulnerabilities": {}}),
    }
    gatekeeper = make_gatekeeper(tmp_path_factory.mktemp("vulns"), tap.url, extra_env=env)
    yield gatekeeper, tap
    gatekeeper.stop()
    tap.close()


def python_layer(tar: tarfile.TarFile) -> None:
    tar.add(str(DIST), f"usr/lib/python3/dist-packages/{DIST.name}")


def wait_for(gk: Gatekeeper, digest: str, state: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = gk.database.fetch("SELECT state FROM verdicts WHERE digest = :d", {"d": digest})
        row = rows[0]["state"] if rows else None
        if row == state:
            return
        time.sleep(0.2)
    raise AssertionError(f"{digest} never became {state} (last: {row})")


def test_import_quarantines_without_reading_layers(tapped: tuple[Gatekeeper, Tap]) -> None:
    gk, tap = tapped
    data, diff_id = layer(python_layer)
    layers = [(data, diff_id)]
    accept = {"Accept": OCI_MANIFEST}
    with httpx.Client(base_url=gk.url, timeout=120) as http:
        digest, manifest = push_image(http, "vuln/app", "v1", [data], config_for(layers))
        assert wait_state(gk, digest) == "passed"  # no advisories yet
        layer_digest = json.loads(manifest)["layers"][0]["digest"]
        first = layer_reads(tap, layer_digest)
        assert len(first) == 1  # read once, shared by inventory and vulnerabilities
        tap.clear()

        done = run_cli(gk, "advisories", "import", str(RECORDS), timeout=120)
        assert done.returncode == 0, done.stderr
        assert "10 added" in done.stdout and "1 images re-evaluated" in done.stdout, done.stdout
        assert "0 images queued" in done.stdout, done.stdout  # the stored inventory sufficed

        wait_for(gk, digest, "quarantined")
        resp = http.get(f"/v2/vuln/app/manifests/{digest}", headers=accept)
        assert resp.status_code == 403, resp.text
        error = resp.json()["errors"][0]
        assert error["code"] == "DENIED"
        assert ADVISORY in error["message"], error["message"]

    upstream = [e.target for e in tap.exchanges() if e.method == "GET"]
    assert layer_reads(tap, layer_digest) == []  # re-evaluation used the stored inventory
    # ... and asked nothing else either: the only manifest GET is the test's own pull
    assert [t for t in upstream if "/vuln/app/" in t] == [
        f"/v2/vuln/app/manifests/{digest.replace(':', '%3A')}"
    ], upstream

    again = run_cli(gk, "advisories", "import", str(RECORDS), timeout=120)
    # Issue 16: re-importing unchanged records makes no new data version.
    expected = "nothing new: advisory data version 1 stays in force (10 unchanged, 0 rejected)"
    assert again.returncode == 0 and expected in again.stdout, again.stdout
    versions = gk.database.fetch("SELECT version FROM advisory_data_versions")
    assert [row["version"] for row in versions] == [1]
