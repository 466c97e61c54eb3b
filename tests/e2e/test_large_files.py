"""Files over the scanners' in-memory limit end to end: an image holding a Go program built by
Debian's Go is pushed through the gatekeeper with ``max_file_bytes`` of the ``inventory`` and
``malware`` verifiers set below the binary's size. The binary is read once, in chunks: its SBOM
lists the same Go packages the whole-file parser finds, without a ``layer.file-too-large``
finding, and its SHA-256 in the malware denylist is found; a file over ``max_hash_bytes`` is
counted as not inspected."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.ecosystems import build_go_binary, have_go
from tests.support.gatekeeper import Gatekeeper, make_gatekeeper, sbom, wait_state
from tests.support.layers import config_for, layer
from tests.support.ocihttp import push_image
from tests.support.registry import Registry
from verifiers.scan.ecosystems import golang

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not have_go(), reason="needs Debian's Go (apt-get install golang-go)"),
]

LIMIT = 256 * 1024
"""``max_file_bytes`` of both verifiers: well under any Go binary."""
MAX_HASH = 16 * 1024 * 1024
"""``max_hash_bytes`` of the malware verifier: over the Go binary."""
HUGE = bytes(MAX_HASH + 1)
"""Over ``max_hash_bytes``: neither held nor hashed, only counted."""


@pytest.fixture(scope="module")
def binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    built = build_go_binary(tmp_path_factory.mktemp("large") / "go")
    assert 4 * LIMIT < built.stat().st_size < MAX_HASH
    return built


@pytest.fixture(scope="module")
def gk(
    registry: Registry, binary: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gatekeeper]:
    work = tmp_path_factory.mktemp("large-gk")
    denylist = work / "denylist.sha256"
    denylist.write_text(hashlib.sha256(binary.read_bytes()).hexdigest() + "\n")
    env = {
        "GATEKEEPER_POLICIES": json.dumps(
            [{"name": "large", "repositories": ["large/*"], "require": ["inventory", "malware"]}]
        ),
        "GATEKEEPER_VERIFIERS": json.dumps(
            {
                "inventory": {"options": {"max_file_bytes": LIMIT}},
                "malware": {
                    "options": {
                        "denylist": str(denylist),
                        "max_file_bytes": LIMIT,
                        "max_hash_bytes": MAX_HASH,
                    }
                },
            }
        ),
    }
    gatekeeper = make_gatekeeper(work, registry.url, extra_env=env)
    yield gatekeeper
    gatekeeper.stop()


@pytest.fixture(scope="module")
def pushed(gk: Gatekeeper, binary: Path) -> dict[str, Any]:
    def go(tar: tarfile.TarFile) -> None:
        tar.add(str(binary), "usr/local/bin/app")  # mode 0755 as go build wrote it
        member = tarfile.TarInfo("srv/blob.bin")
        member.size = len(HUGE)
        tar.addfile(member, io.BytesIO(HUGE))

    layers = [layer(go)]
    with httpx.Client(base_url=gk.url, timeout=120) as http:
        digest, _ = push_image(
            http, "large/app", "v1", [data for data, _ in layers], config_for(layers)
        )
    state = wait_state(gk, digest, timeout=120)
    rows = gk.database.fetch(
        "SELECT verifier, rule_id, location, evidence FROM findings WHERE digest = :d",
        {"d": digest},
    )
    return {
        "digest": digest,
        "state": state,
        "findings": rows,
        "sbom": sbom(gk, f"large/app@{digest}"),
    }


def test_large_go_binary_is_inventoried_as_the_whole_file_parser_sees_it(
    pushed: dict[str, Any], binary: Path
) -> None:
    expected = {(p.name, p.version) for p in golang.parse("bin/app", binary.read_bytes())}
    assert len(expected) > 2 and any(name == "stdlib" for name, _ in expected)
    found = {
        (c["name"], c["version"])
        for c in pushed["sbom"]["components"]
        if c.get("purl", "").startswith("pkg:golang/")
    }
    assert found == expected
    rules = {row["rule_id"] for row in pushed["findings"]}
    assert "layer.file-too-large" not in rules


def test_large_denylisted_binary_is_found_and_larger_files_counted(
    pushed: dict[str, Any], binary: Path
) -> None:
    assert pushed["state"] == "quarantined"
    malware = [(r["rule_id"], r["location"], r["evidence"]) for r in pushed["findings"]]
    digest = hashlib.sha256(binary.read_bytes()).hexdigest()
    hits = [m for m in malware if m[0] == "malware.denylisted-hash"]
    assert len(hits) == 1 and hits[0][1].endswith(":usr/local/bin/app")
    assert hits[0][2] == f"sha256:{digest}"
    skipped = [m[2] for m in malware if m[0] == "malware.not-inspected"]
    assert skipped == ["1 not inspected: 1 larger than max_hash_bytes"]
