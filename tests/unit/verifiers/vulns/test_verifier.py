"""The vulnerabilities verifier: matches the inventory against an advisory source, shares each
layer read with the concurrently running inventory verifier, records the data version."""

from __future__ import annotations

import asyncio
import gzip

import pytest

from config.settings import VerifierSettings
from tests.fakes.advisories import MemoryAdvisories
from tests.fakes.layers import FakeBlobs, MemoryCache, MemorySink
from tests.support.scanning import image
from tests.unit.verifiers.scan.conftest import files, tar_bytes
from tests.unit.verifiers.vulns.conftest import record
from verifiers.base import Severity, VerifierError, Versioned
from verifiers.registry import build_verifiers
from verifiers.vulns.verifier import VulnerabilityVerifier

METADATA = b"Metadata-Version: 2.1\nName: urllib3\nVersion: 1.26.12\n"
DIST = "usr/lib/python3/dist-packages/urllib3-1.26.12.dist-info/METADATA"

pytestmark = pytest.mark.testdata


async def test_finding_per_advisory_and_layers_read_once() -> None:
    blobs = FakeBlobs()
    layer = blobs.add("sha256:py", gzip.compress(tar_bytes(files({DIST: METADATA}))))
    source = MemoryAdvisories(record("pypi/PYSEC-2023-192.json"), record("go/GO-2023-1751.json"))
    configured = {"inventory": VerifierSettings(), "vulnerabilities": VerifierSettings()}
    inventory, vulns = build_verifiers(configured, MemoryCache(), MemorySink(), source)
    assert isinstance(vulns, VulnerabilityVerifier)
    img = image(blobs, "sha256:i1", [layer])
    _, found = await asyncio.gather(inventory.verify(img), vulns.verify(img))
    assert blobs.opened == ["sha256:py"]  # one read served both verifiers
    assert isinstance(found, Versioned)
    (finding,) = found.findings
    assert finding.rule_id == "PYSEC-2023-192" and finding.severity is Severity.HIGH
    assert "fix: 1.26.17" in finding.title
    assert "CVE-2023-43804" in finding.evidence
    assert found.version.endswith("advisories-7")

    source.version = 8  # an import landed: the next result says so, the first keeps its own
    again = await vulns.verify(image(blobs, "sha256:i2", [layer]))
    assert blobs.opened == ["sha256:py"]  # served from the layer cache
    assert isinstance(again, Versioned)
    assert [f.rule_id for f in again.findings] == ["PYSEC-2023-192"]
    assert again.version.endswith("advisories-8") and found.version.endswith("advisories-7")


async def test_not_affected_at_the_fixed_version() -> None:
    blobs = FakeBlobs()
    fixed = METADATA.replace(b"1.26.12", b"1.26.17")
    layer = blobs.add("sha256:ok", gzip.compress(tar_bytes(files({DIST: fixed}))))
    source = MemoryAdvisories(record("pypi/PYSEC-2023-192.json"))
    (vulns,) = build_verifiers({"vulnerabilities": VerifierSettings()}, MemoryCache(), None, source)
    result = await vulns.verify(image(blobs, "sha256:i", [layer]))
    assert isinstance(result, Versioned) and result.findings == []


async def test_without_an_advisory_store_it_fails_closed() -> None:
    (vulns,) = build_verifiers({"vulnerabilities": VerifierSettings()}, MemoryCache())
    with pytest.raises(VerifierError, match="advisory store"):  # an error outcome: fails closed
        await vulns.verify(image(FakeBlobs(), "sha256:i", []))
