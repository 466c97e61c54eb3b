"""The ``secrets`` verifier: keys, tokens and credentials in layers and in the config's ``Env``.

Every text file up to ``max_file_bytes`` is searched (``secret_patterns``); binary files (a NUL
byte in the first KiB) and larger files are skipped and counted, and the counts are one INFO
finding per layer. A secret in a lower layer that a later layer deletes is still reported: the
lower layer is still in the image, and anyone who pulls it can read the file.

Skipped paths (``skip_paths``, prefixes) default to documentation, man pages, locales and time
zones: text written by distribution packages, where a match is an example, never a credential
of the image's owner. Test fixtures of language packages are *not* skipped by default, though
they hold test keys: a directory name cannot tell a package's test data from an application's
own ``tests/`` that holds a real key; waive a known test key by rule id and repository instead.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from verifiers.base import Finding, Image, Skipped, index_skip
from verifiers.content import secret_patterns as patterns
from verifiers.content.base import (
    LayerContentVerifier,
    fingerprint,
    hits_scanner,
    limits_of,
)
from verifiers.content.hits import LayerHits
from verifiers.layers import LayerScan
from verifiers.scan.limits import MiB, ScanLimits
from verifiers.scan.reader import LayerReport
from verifiers.scan.tarstream import Entry

NAME = "secrets"
SCHEMA = "1"
BINARY_SNIFF = 1024
"""Bytes looked at for a NUL to call a file binary (as git and grep do)."""

DEFAULT_SKIP = (
    "usr/share/doc/",
    "usr/share/man/",
    "usr/share/info/",
    "usr/share/locale/",
    "usr/share/i18n/",
    "usr/share/zoneinfo/",
    "usr/share/common-licenses/",
)


class SecretsOptions(ScanLimits):
    """Options of ``[verifiers.secrets.options]`` (plus the read limits of ``ScanLimits``)."""

    max_file_bytes: int = Field(default=1 * MiB, ge=1)
    """Largest text file searched; larger ones are skipped and counted."""
    skip_paths: tuple[str, ...] = DEFAULT_SKIP
    """Path prefixes (relative to the root) not searched."""
    min_entropy: float = Field(default=3.5, gt=0, le=8)
    """Bits per character a value needs for ``secret.generic-high-entropy``."""


class SecretScan(LayerScan[LayerHits]):
    """The secret search over one layer read."""

    def __init__(self, options: SecretsOptions) -> None:
        self.options = options
        self.hits = LayerHits()

    def wants(self, path: str, entry: Entry) -> bool:
        return not path.startswith(self.options.skip_paths)

    def too_large(self, path: str, entry: Entry, report: LayerReport) -> None:
        self.hits.skip("larger than max_file_bytes")

    def visit(self, path: str, data: bytes) -> None:
        if b"\0" in data[:BINARY_SNIFF]:
            self.hits.skip("binary")
            return
        text = data.decode("utf-8", "replace")
        anchored = patterns.ANCHORS.search(data) is not None
        for match in patterns.find(path, text, self.options.min_entropy, anchored):
            self.hits.add(match.rule_id, path, match.evidence)

    def result(self, report: LayerReport) -> LayerHits:
        return self.hits


class SecretsVerifier(LayerContentVerifier):
    """Secrets in layers (``secret.*`` rules) and in the image config's ``Env`` (``secret.env``)."""

    name = NAME

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        self.options = SecretsOptions.model_validate(options or {})
        limits = limits_of(self.options)
        self.version = f"{SCHEMA}.{fingerprint(self.options.model_dump())}"
        super().__init__(
            hits_scanner(NAME, self.version, limits, lambda _: SecretScan(self.options))
        )

    async def verify(self, image: Image) -> list[Finding] | Skipped:
        skipped = index_skip(image)
        if skipped:
            return skipped
        results = await self.layer_hits(image)
        return self.env_findings(image) + self.layer_findings(
            image, results, "secret.skipped-files"
        )

    def env_findings(self, image: Image) -> list[Finding]:
        inner = (image.config or {}).get("config")
        env = inner.get("Env") if isinstance(inner, dict) else None
        findings: list[Finding] = []
        for variable in env if isinstance(env, list) else []:
            match = patterns.in_env(variable) if isinstance(variable, str) else None
            if match is not None:
                findings.append(
                    self.finding(
                        match.rule_id, "config:Env", match.evidence, blob=image.config_digest
                    )
                )
        return findings
