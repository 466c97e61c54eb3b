"""One read per layer per process, however many verifiers scan it: inventory,
vulnerabilities and the three content checks share it through ``Stores.reads``; each result is
cached under its own scanner name and version."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path
from typing import Any

import pytest

from config.settings import VerifierSettings
from tests.fakes.advisories import MemoryAdvisories
from tests.fakes.layers import FakeBlobs, MemoryCache, MemorySink
from tests.unit.verifiers.content.conftest import add_layer, entry, image, rsa_pem
from verifiers.base import VerifierError, Versioned
from verifiers.layers import LayerReads, LayerScan, LayerScanner
from verifiers.registry import build_verifiers
from verifiers.scan.limits import ScanLimits
from verifiers.scan.reader import LayerReport
from verifiers.scan.tarstream import Entry

STATUS = b"Package: bash\nStatus: install ok installed\nVersion: 5.2-1\nArchitecture: amd64\n"
EVIL = b"evil payload\n"


def all_verifiers(cache: MemoryCache, tmp_path: Path) -> list[Any]:
    denylist = tmp_path / "denylist"
    denylist.write_text(hashlib.sha256(EVIL).hexdigest() + "\n")
    configured = {
        "inventory": VerifierSettings(),
        "vulnerabilities": VerifierSettings(),
        "secrets": VerifierSettings(),
        "malware": VerifierSettings(options={"denylist": str(denylist)}),
        "hardening": VerifierSettings(),
    }
    return build_verifiers(configured, cache, MemorySink(), MemoryAdvisories())


def layers(blobs: FakeBlobs) -> list[str]:
    return [
        add_layer(blobs, "sha256:base", [entry("var/lib/dpkg/status", STATUS)]),
        add_layer(
            blobs,
            "sha256:app",
            [
                entry("root/.ssh/id_rsa", rsa_pem().encode(), 0o600),
                entry("usr/local/bin/x", EVIL, 0o4755),
            ],
        ),
    ]


async def test_every_verifier_shares_one_read_per_layer(tmp_path: Path) -> None:
    blobs, cache = FakeBlobs(), MemoryCache()
    verifiers = all_verifiers(cache, tmp_path)
    img = image(blobs, layers(blobs))
    results = await asyncio.gather(*(v.verify(img) for v in verifiers))
    assert sorted(blobs.opened) == ["sha256:app", "sha256:base"]
    assert verifiers[0]._reads.reads == 2
    found = [r.findings if isinstance(r, Versioned) else r for r in results]
    rules = {f.rule_id for result in found if isinstance(result, list) for f in result}
    assert {"secret.private-key", "malware.denylisted-hash", "hardening.setuid"} <= rules
    scanners = {(layer, name) for layer, name, _ in cache.rows}
    assert scanners == {
        (layer, name)
        for layer in ("sha256:base", "sha256:app")
        for name in ("inventory", "secrets", "malware", "hardening")
    }
    # another image with the same layers, and a re-verification: no read at all
    again = image(blobs, list(blobs.blobs), digest="sha256:other")
    await asyncio.gather(*(v.verify(again) for v in verifiers))
    assert len(blobs.opened) == 2


async def test_a_verifier_asking_later_finds_its_result_from_the_first_read(
    tmp_path: Path,
) -> None:
    blobs, cache = FakeBlobs(), MemoryCache()
    inventory, _, secrets, _, _ = all_verifiers(cache, tmp_path)
    img = image(blobs, layers(blobs))
    await inventory.verify(img)  # reads both layers, running every registered scanner
    await secrets.verify(img)
    assert sorted(blobs.opened) == ["sha256:app", "sha256:base"]


class Exploding(LayerScan[dict[str, Any]]):
    def wants(self, path: str, entry: Entry) -> bool:
        return True

    def visit(self, path: str, data: bytes) -> None:
        raise ValueError(f"cannot parse {data!r}")  # quotes the file: must not leak

    def result(self, report: LayerReport) -> dict[str, Any]:
        return {}


async def test_a_failing_scanner_fails_alone_without_quoting_the_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blobs, cache = FakeBlobs(), MemoryCache()
    inventory, *_ = all_verifiers(cache, tmp_path)
    reads: LayerReads = inventory._reads
    broken = LayerScanner[dict[str, Any]](
        "broken", "1", ScanLimits(), lambda _: Exploding(), dict, dict
    )
    reads.register(broken)
    img = image(blobs, layers(blobs))
    assert isinstance(await inventory.verify(img), list)
    with pytest.raises(VerifierError) as raised:
        await reads.result(broken, "sha256:app", blobs)
    assert "ValueError" in str(raised.value) and "BEGIN" not in str(raised.value)
    assert "BEGIN" not in caplog.text and "evil" not in caplog.text
    assert ("sha256:app", "broken", "1") not in cache.rows


async def test_scanners_with_other_read_limits_read_separately() -> None:
    blobs, cache = FakeBlobs(), MemoryCache()
    configured = {
        "inventory": VerifierSettings(options={"max_entries": 1000}),
        "secrets": VerifierSettings(),
    }
    inventory, secrets = build_verifiers(configured, cache, MemorySink())
    img = image(blobs, layers(blobs)[:1])
    await asyncio.gather(inventory.verify(img), secrets.verify(img))
    assert blobs.opened == ["sha256:base", "sha256:base"]


async def test_per_file_limits_do_not_split_the_read(tmp_path: Path) -> None:
    blobs, cache = FakeBlobs(), MemoryCache()
    configured = {
        "inventory": VerifierSettings(options={"max_file_bytes": 4096}),
        "secrets": VerifierSettings(options={"max_file_bytes": 100}),
    }
    inventory, secrets = build_verifiers(configured, cache, MemorySink())
    img = image(blobs, layers(blobs))
    inventory_findings, secret_findings = await asyncio.gather(
        inventory.verify(img), secrets.verify(img)
    )
    assert sorted(blobs.opened) == ["sha256:app", "sha256:base"]
    assert inventory_findings == []  # the secrets scanner's limit is not a layer problem
    assert isinstance(secret_findings, list)  # the key, over its limit, streamed to it
    assert {f.rule_id for f in secret_findings} == {"secret.private-key"}


async def test_a_cancelled_caller_does_not_cancel_the_read_for_others(tmp_path: Path) -> None:
    blobs, cache = FakeBlobs(), MemoryCache()
    inventory, _, secrets, _, _ = all_verifiers(cache, tmp_path)
    img = image(blobs, layers(blobs))
    first = asyncio.ensure_future(inventory.verify(img))
    await asyncio.sleep(0)
    second = asyncio.ensure_future(secrets.verify(img))
    await asyncio.sleep(0)
    first.cancel()
    result = await second
    assert isinstance(result, list) and any(f.rule_id == "secret.private-key" for f in result)
    assert sorted(blobs.opened) == ["sha256:app", "sha256:base"]


class CountingCache(MemoryCache):
    """A layer cache that counts look-ups: each one is a database round trip in production."""

    def __init__(self) -> None:
        super().__init__()
        self.gets = 0

    async def get(self, layer_digest: str, verifier: str, version: str) -> dict[str, Any] | None:
        self.gets += 1
        return await super().get(layer_digest, verifier, version)


def found(results: list[Any]) -> list[list[tuple[str, str, str, str]]]:
    """Each verifier's findings, in order, as comparable tuples."""
    return [
        [
            (f.verifier, f.rule_id, f.location, f.evidence)
            for f in (r.findings if isinstance(r, Versioned) else r)
        ]
        for r in results
    ]


async def test_a_layer_listed_many_times_is_looked_up_read_and_reported_once(
    tmp_path: Path,
) -> None:
    blobs, cache = FakeBlobs(), CountingCache()
    base, app = layers(blobs)
    repeated = image(blobs, [base, *[app] * 2000, base, app], digest="sha256:repeated")
    verifiers = all_verifiers(cache, tmp_path)
    results = await asyncio.gather(*(v.verify(repeated) for v in verifiers))
    assert sorted(blobs.opened) == ["sha256:app", "sha256:base"]
    # look-ups bounded by distinct layers x scanners x verifiers, not by the 2,003 entries
    assert cache.gets <= 2 * 4 * len(verifiers)
    # the same findings, each once, as the image listing each layer once in its final order
    fresh = all_verifiers(MemoryCache(), tmp_path)
    once = await asyncio.gather(*(v.verify(image(blobs, [base, app])) for v in fresh))
    assert found(results) == found(once)
    assert any(rule == "secret.private-key" for f in found(results) for _, rule, _, _ in f)
    for per_verifier in found(results):
        assert len(per_verifier) == len(set(per_verifier))
