"""The inventory verifier: layers read once through the cache, inventory to the sink, hostile
layers as findings, artifacts skipped; built from settings by the registry."""

from __future__ import annotations

import gzip
from typing import Any

from config.settings import VerifierSettings
from tests.fakes.layers import FakeBlobs, MemoryCache, MemorySink
from tests.support.scanning import image
from tests.unit.verifiers.scan.conftest import files, tar_bytes
from verifiers.base import Image, Severity, Skipped
from verifiers.registry import build_verifiers
from verifiers.scan.verifier import InventoryVerifier

STATUS = b"Package: bash\nStatus: install ok installed\nVersion: 5.2-1\nArchitecture: amd64\n"
OS = b'ID=debian\nVERSION_ID="12"\n'


def build(
    options: dict[str, Any] | None = None,
) -> tuple[InventoryVerifier, MemoryCache, MemorySink]:
    cache, sink = MemoryCache(), MemorySink()
    (verifier,) = build_verifiers(
        {"inventory": VerifierSettings(options=options or {})}, cache, sink
    )
    assert isinstance(verifier, InventoryVerifier)
    return verifier, cache, sink


async def test_shared_layers_are_read_once_and_inventory_is_stored() -> None:
    blobs = FakeBlobs()
    base = blobs.add(
        "sha256:base",
        gzip.compress(tar_bytes(files({"var/lib/dpkg/status": STATUS, "etc/os-release": OS}))),
    )
    app = blobs.add(
        "sha256:app",
        gzip.compress(
            tar_bytes(files({"app/node_modules/x/package.json": b'{"name":"x","version":"1.0.0"}'}))
        ),
    )
    other = blobs.add("sha256:other", gzip.compress(tar_bytes(files({"README": b"hi"}))))
    verifier, _, sink = build()
    assert await verifier.verify(image(blobs, "sha256:i1", [base, app])) == []
    assert await verifier.verify(image(blobs, "sha256:i2", [base, other])) == []
    assert sorted(blobs.opened) == ["sha256:app", "sha256:base", "sha256:other"]
    first = sink.stored[("team/app", "sha256:i1")]
    assert {p.purl for p in first.packages} == {
        "pkg:deb/debian/bash@5.2-1?arch=amd64&distro=debian-12",
        "pkg:npm/x@1.0.0",
    }
    assert [p.name for p in sink.stored[("team/app", "sha256:i2")].packages] == ["bash"]


async def test_hostile_layer_findings_are_cached_too() -> None:
    blobs = FakeBlobs()
    evil = blobs.add("sha256:evil", tar_bytes(files({"../../etc/passwd": b"x"})))
    verifier, _, _ = build()
    for digest in ("sha256:i1", "sha256:i2"):
        result = await verifier.verify(image(blobs, digest, [evil]))
        assert isinstance(result, list)
        (finding,) = result
        assert finding.rule_id == "layer.path-traversal" and finding.severity is Severity.HIGH
        assert finding.location == "sha256:evil:../../etc/passwd"
    assert blobs.opened == ["sha256:evil"]


async def test_limits_change_the_cache_version() -> None:
    assert build()[0].version != build({"max_entries": 10})[0].version


async def test_indexes_are_skipped_but_labels_and_configs_never_skip_a_scan() -> None:
    """What a manifest is was decided from its content before the verifier runs: a
    ``subject`` or an unreadable config does not make the layers any less worth reading."""
    verifier, _, _ = build()
    plain = image(FakeBlobs(), "sha256:a", [])
    with_subject = Image(**{**plain.__dict__, "manifest": {"subject": {"digest": "sha256:x"}}})
    assert await verifier.verify(with_subject) == []
    no_config = Image(**{**plain.__dict__, "config": None, "config_problem": "not JSON"})
    assert await verifier.verify(no_config) == []
    index = Image(**{**plain.__dict__, "is_index": True})
    assert isinstance(await verifier.verify(index), Skipped)


def test_bad_option_names_the_field() -> None:
    import pytest

    from verifiers.registry import VerifierConfigError

    with pytest.raises(VerifierConfigError, match=r"verifiers\.inventory\.options\.max_entries"):
        build({"max_entries": 0})
