"""Fake verifiers, loaded by the real gatekeeper through ``plugin = "tests.fakes.verifiers:X"``.

Each reacts to labels in the pushed image's config, so one gatekeeper can serve every scenario
and each test decides its outcome by what it pushes.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from verifiers.base import BlobOpener, Descriptor, Finding, Image, Severity, Skipped


def _labels(image: Image) -> dict[str, str]:
    config = image.config or {}
    inner = config.get("config") or {}
    labels = inner.get("Labels") if isinstance(inner, dict) else None
    return labels if isinstance(labels, dict) else {}


class LabelFindings:
    """Reports the findings listed as JSON in the label ``test.findings``."""

    name = "labels"
    version = "1"

    def __init__(self, options: dict[str, Any]) -> None:
        self.options = options

    async def verify(self, image: Image) -> list[Finding] | Skipped:
        if image.config is None:
            return Skipped("no config")
        raw = _labels(image).get("test.findings")
        if not raw:
            return []
        return [
            Finding(self.name, f["rule_id"], Severity.parse(f["severity"]), f.get("title", ""))
            for f in json.loads(raw)
        ]


class FileFindings:
    """Reports the findings listed as JSON in the file named by the option ``path`` (absent
    file: none), so a test can make findings appear between two verifications of one image,
    as a newly published advisory or a revoked signature would."""

    name = "file-findings"
    version = "1"

    def __init__(self, options: dict[str, Any]) -> None:
        self.path = Path(options["path"])

    async def verify(self, image: Image) -> list[Finding] | Skipped:
        if not self.path.exists():
            return []
        return [
            Finding(self.name, f["rule_id"], Severity.parse(f["severity"]), f.get("title", ""))
            for f in json.loads(self.path.read_text())
        ]


class Raises:
    """Crashes on images labelled ``test.raise``."""

    name = "raises"
    version = "1"

    def __init__(self, options: dict[str, Any]) -> None:
        self.options = options

    async def verify(self, image: Image) -> list[Finding] | Skipped:
        if "test.raise" in _labels(image):
            raise RuntimeError("simulated verifier crash")
        return []


class Hangs:
    """Never returns on images labelled ``test.hang`` (the pipeline's timeout must end it)."""

    name = "hangs"
    version = "1"

    def __init__(self, options: dict[str, Any]) -> None:
        self.options = options

    async def verify(self, image: Image) -> list[Finding] | Skipped:
        if "test.hang" in _labels(image):
            await asyncio.sleep(3600)
        return []


class Slow:
    """Takes ``test.sleep`` seconds (a label, capped by the option ``cap_seconds``) before
    passing: a job to kill the gatekeeper in."""

    name = "slow"
    version = "1"

    def __init__(self, options: dict[str, Any]) -> None:
        self.options = options

    async def verify(self, image: Image) -> list[Finding] | Skipped:
        delay = float(_labels(image).get("test.sleep", "0"))
        delay = min(delay, float(self.options.get("cap_seconds", delay)))
        marker = self.options.get("started_dir")
        if marker and delay:
            Path(marker, image.digest.replace(":", "-")).touch()
        await asyncio.sleep(delay)
        return []


class CountingLayers:
    """A layer verifier that reads each layer it is given and records its digest in a file,
    so tests can prove shared layers are read once."""

    name = "counting-layers"
    version = "1"

    def __init__(self, options: dict[str, Any]) -> None:
        self.log = Path(options["log"])

    async def verify_layer(self, layer: Descriptor, blobs: BlobOpener) -> list[Finding] | Skipped:
        size = 0
        async with blobs.open(layer.digest) as chunks:
            async for chunk in chunks:
                size += len(chunk)
        with self.log.open("a") as out:
            out.write(f"{layer.digest} {size}\n")
        return []
