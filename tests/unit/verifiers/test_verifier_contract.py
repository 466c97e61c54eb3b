"""The contract every registered verifier keeps (``verifiers/registry.py``'s ``BUILTINS``),
checked over each one built as the gatekeeper builds it:

- it implements the protocol, with a name and a version;
- its result is ``list[Finding]`` (or ``Noted``), ``Versioned`` or ``Skipped``, and every
  finding is its own (its name, a ``Severity``, a rule id and a title);
- an index is skipped unless it declares ``checks_indexes`` (a platform image's check must not
  pass an index);
- it respects its timeout: when what it reads never arrives, the pipeline ends it within its
  ``timeout_seconds`` and records an error, never a result;
- it reads nothing but its declared inputs: the image (its own blobs, manifests, the
  repositories it names) and the storage ports it was given. No file is opened, no socket
  connected, no process started while it verifies (an audit hook watches every thread).

A new entry in ``BUILTINS`` without a case here fails
:func:`test_every_registered_verifier_is_covered`.
"""

from __future__ import annotations

import asyncio
import io
import sys
import tarfile
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from config.settings import VerifierSettings
from tests.fakes.advisories import MemoryAdvisories
from tests.fakes.layers import FakeBlobs, MemoryCache, MemorySink
from tests.support import cosign
from tests.support.layers import config_for, layer
from verifiers.base import (
    Descriptor,
    FetchedManifest,
    Finding,
    Image,
    RepositoryView,
    Severity,
    Skipped,
    Verifier,
    Versioned,
)
from verifiers.pipeline import run_one
from verifiers.registry import BUILTINS, build_verifiers
from verifiers.registry_names import RegistryNames

LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
CONFIG = "application/vnd.oci.image.config.v1+json"
DIGEST = "sha256:" + "d" * 64
TIMEOUT = 0.5
GRACE = 5.0
"""How long past its timeout the pipeline may take to end a verifier (a busy, shared machine)."""


def _options(tmp_path: Path) -> dict[str, dict[str, Any]]:
    """Each built-in with options that make it check something (malware needs a denylist,
    signatures a signer and a rule)."""
    (tmp_path / "denylist.sha256").write_text("# nothing known\n" + "0" * 64 + "\n")
    signer = cosign.public_pem(cosign.new_key()).decode()
    return {
        "config-sanity": {},
        "hardening": {},
        "inventory": {},
        "malware": {"denylist": str(tmp_path / "denylist.sha256")},
        "secrets": {},
        "signatures": {
            "signers": [{"name": "bot", "key": signer}],
            "rules": [
                {"name": "all", "repositories": ["*"], "signers": ["bot"], "require_tlog": False}
            ],
        },
        "vulnerabilities": {},
    }


def _layer(tar: tarfile.TarFile) -> None:
    for name, data in {
        "etc/os-release": b'ID=debian\nVERSION_ID="12"\n',
        "var/lib/dpkg/status": b"Package: zlib1g\nStatus: install ok installed\n"
        b"Version: 1:1.2.13.dfsg-1\nArchitecture: amd64\n\n",
        "app/README": b"hello\n",
    }.items():
        info = tarfile.TarInfo(name)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))


class Manifests:
    """The repository's manifests (none but the image): records every reference asked for."""

    def __init__(self, hang: bool = False) -> None:
        self.hang = hang
        self.fetched: list[str] = []

    async def fetch(self, reference: str) -> FetchedManifest | None:
        self.fetched.append(reference)
        if self.hang:
            await asyncio.Event().wait()
        return None


class Repositories:
    def __init__(self, blobs: FakeBlobs, manifests: Manifests) -> None:
        self.blobs, self.manifests = blobs, manifests
        self.opened: list[str] = []

    async def open(self, repository: str, subject: str) -> RepositoryView:
        self.opened.append(repository)
        return RepositoryView(repository, self.manifests, self.blobs)


def _image(hang: bool = False) -> tuple[Image, FakeBlobs, Manifests, Repositories]:
    blob, diff_id = layer(_layer)
    config = config_for([(blob, diff_id)])
    layer_digest = "sha256:" + "1" * 64
    config_digest = "sha256:" + "c" * 64
    blobs = FakeBlobs(hang=hang)
    blobs.add(layer_digest, blob)
    blobs.add(config_digest, config)
    manifests = Manifests(hang=hang)
    repositories = Repositories(blobs, manifests)
    image = Image(
        repository="team/app",
        digest=DIGEST,
        media_type="application/vnd.oci.image.manifest.v1+json",
        manifest={"schemaVersion": 2},
        config={"os": "linux", "architecture": "amd64", "config": {"User": "app"}},
        layers=(Descriptor(LAYER, layer_digest, len(blob)),),
        children=(),
        blobs=blobs,
        manifests=manifests,
        repositories=repositories,
        config_descriptor=Descriptor(CONFIG, config_digest, len(config)),
    )
    return image, blobs, manifests, repositories


def _build(name: str, tmp_path: Path) -> Verifier:
    settings = VerifierSettings(options=_options(tmp_path)[name], timeout_seconds=TIMEOUT)
    (built,) = build_verifiers(
        {name: settings},
        MemoryCache(),
        MemorySink(),
        MemoryAdvisories(),
        registry=RegistryNames.of(["registry.example.test"]),
    )
    return built


class Watch:
    """Every file opened, socket connected and process started, in any thread, while on."""

    EVENTS = ("open", "socket.connect", "socket.getaddrinfo", "subprocess.Popen", "os.exec")
    on = False
    seen: list[tuple[str, str]] = []
    _hooked = False

    @classmethod
    def hook(cls) -> None:
        if not cls._hooked:  # an audit hook stays for the process: install it once, idle
            sys.addaudithook(cls._event)
            cls._hooked = True

    @classmethod
    def _event(cls, event: str, args: tuple[Any, ...]) -> None:
        if cls.on and event in cls.EVENTS:
            cls.seen.append((event, repr(args[:2])[:200]))


VERIFIERS = sorted(BUILTINS)
READERS = {"hardening", "inventory", "malware", "secrets", "vulnerabilities"}
"""The verifiers that read layers: a test below asks that they did read them (else a check
that read nothing would pass the timeout and I/O tests vacuously)."""


def test_the_watch_sees_what_happens_in_any_thread(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    Watch.hook()
    Watch.seen.clear()
    Watch.on = True
    try:
        thread = threading.Thread(target=lambda: (tmp_path / "f").read_text())
        thread.start()
        thread.join()
    finally:
        Watch.on = False
    assert [event for event, _ in Watch.seen] == ["open"]


def test_every_registered_verifier_is_covered(tmp_path: Path) -> None:
    assert set(_options(tmp_path)) == set(BUILTINS)


@pytest.mark.parametrize("name", VERIFIERS)
async def test_results_are_of_the_protocol_and_findings_are_its_own(
    name: str, tmp_path: Path
) -> None:
    verifier = _build(name, tmp_path)
    assert isinstance(verifier, Verifier)
    assert verifier.name == name and isinstance(verifier.version, str) and verifier.version
    image, *_ = _image()
    result = await verifier.verify(image)
    assert isinstance(result, list | Versioned | Skipped), type(result)
    findings = result.findings if isinstance(result, Versioned) else result
    if isinstance(result, Versioned):
        assert isinstance(result.version, str) and result.version
    for finding in findings if isinstance(findings, list) else []:
        assert isinstance(finding, Finding)
        assert finding.verifier == name, finding
        assert isinstance(finding.severity, Severity) and finding.rule_id and finding.title


@pytest.mark.parametrize("name", VERIFIERS)
async def test_an_index_is_skipped_unless_the_verifier_checks_indexes(
    name: str, tmp_path: Path
) -> None:
    verifier = _build(name, tmp_path)
    image, *_ = _image()
    index = replace(
        image,
        media_type="application/vnd.oci.image.index.v1+json",
        config=None,
        layers=(),
        children=(Descriptor("application/vnd.oci.image.manifest.v1+json", DIGEST, 10),),
        config_descriptor=None,
        is_index=True,
    )
    result = await verifier.verify(index)
    if not getattr(verifier, "checks_indexes", False):
        assert isinstance(result, Skipped), result
    else:
        assert not isinstance(result, list) or all(f.verifier == name for f in result)


@pytest.mark.parametrize("name", VERIFIERS)
async def test_the_timeout_is_respected(name: str, tmp_path: Path) -> None:
    verifier = _build(name, tmp_path)
    image, blobs, manifests, _ = _image(hang=True)
    started = time.monotonic()
    outcome = await run_one(verifier, image, TIMEOUT)
    elapsed = time.monotonic() - started
    assert elapsed < TIMEOUT + GRACE, f"{name} ran {elapsed:.1f}s past a {TIMEOUT}s timeout"
    if name in READERS:
        assert blobs.opened, f"{name} did not even try to read the layers"
    if blobs.opened or manifests.fetched:  # it waited on input that never came
        assert outcome.status == "error" and "timed out" in outcome.detail, outcome
        assert not outcome.findings


@pytest.mark.parametrize("name", VERIFIERS)
async def test_nothing_is_read_but_the_declared_inputs(name: str, tmp_path: Path) -> None:
    await _build(name, tmp_path).verify(_image()[0])  # lazy imports happen here
    verifier = _build(name, tmp_path)  # a fresh one: nothing cached, every layer is read
    image, blobs, _, repositories = _image()
    Watch.hook()
    Watch.seen.clear()
    Watch.on = True
    try:
        await verifier.verify(image)
    finally:
        Watch.on = False
    assert Watch.seen == [], f"{name} reached outside its inputs"
    if name in READERS:
        assert blobs.opened, f"{name} read nothing: the watch saw nothing to see"
    declared = {d.digest for d in image.layers}
    declared |= {image.config_descriptor.digest} if image.config_descriptor else set()
    assert set(blobs.opened) <= declared, blobs.opened
    assert set(repositories.opened) <= {image.repository}, repositories.opened
