"""The ``secrets`` verifier: keys, tokens and credentials in layers and in the config's ``Env``.

Every file is searched: a text file up to ``max_file_bytes`` whole (``secret_patterns``), a
binary (a NUL byte in the first KiB) by the rules that name a key's or token's format, around
their anchors, and a larger file as it streams by, in overlapping windows (``secret_windows``).
What the reader showed no scanner (a path over ``max_path_length``, an entry behind an oversized
header) and what follows a read that stopped early is one ``secret.not-inspected`` finding per
layer, blocking by default. A secret in a lower layer that a later layer deletes is still
reported: the lower layer is still in the image, and anyone who pulls it can read the file.

Skipped paths (``skip_paths``, prefixes) default to documentation, man pages, locales and time
zones: text written by distribution packages, where a match is an example, never a credential
of the image's owner. Test fixtures of language packages are *not* skipped by default, though
they hold test keys: a directory name cannot tell a package's test data from an application's
own ``tests/`` that holds a real key; waive a known test key by rule id and repository instead.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import Field

from verifiers.base import Finding, Image, Skipped, index_skip
from verifiers.content import secret_patterns as patterns
from verifiers.content.base import (
    ContentScan,
    LayerContentVerifier,
    fingerprint,
    hits_scanner,
    limits_of,
)
from verifiers.content.secret_patterns import Match
from verifiers.content.secret_windows import Search, WindowedSearch, is_binary, search_bytes
from verifiers.scan.limits import MiB, ScanLimits
from verifiers.scan.reader import ChunkSink
from verifiers.scan.tarstream import Entry

NAME = "secrets"
SCHEMA = "3"
"""Bumped when the same layer and options could give another result.
2: binaries and files over ``max_file_bytes`` are searched, not skipped.
3: what the reader skipped and reads stopped early are counted as not inspected."""

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
    """Largest file searched whole; larger ones are searched in windows as they stream by."""
    skip_paths: tuple[str, ...] = DEFAULT_SKIP
    """Path prefixes (relative to the root) not searched."""
    min_entropy: float = Field(default=3.5, gt=0, le=8)
    """Bits per character a value needs for ``secret.generic-high-entropy``."""


class SecretScan(ContentScan):
    """The secret search over one layer read."""

    def __init__(self, options: SecretsOptions) -> None:
        super().__init__()
        self.options = options

    def wants(self, path: str, entry: Entry) -> bool:
        return not path.startswith(self.options.skip_paths)

    def stream(self, path: str, entry: Entry) -> ChunkSink:
        return WindowedSearch(self._searcher(path), self._adder(path))

    def visit(self, path: str, data: bytes) -> None:
        if is_binary(data):
            matches = self._searcher(path)(data, True)
        elif patterns.ANCHORS.search(data) is not None:
            text = data.decode("utf-8", "replace")
            matches = patterns.find(path, text, self.options.min_entropy)
        elif patterns.is_config(path) or patterns.is_client_config(path):
            text = data.decode("utf-8", "replace")
            matches = patterns.find(path, text, self.options.min_entropy, anchored=False)
        else:
            return  # no rule can match: not worth decoding
        add = self._adder(path)
        for match in matches:
            add(match)

    def _searcher(self, path: str) -> Search:
        entropy = self.options.min_entropy
        return lambda data, binary: search_bytes(path, data, entropy, binary=binary)

    def _adder(self, path: str) -> Callable[[Match], None]:
        return lambda match: self.hits.add(match.rule_id, path, match.evidence)


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
            image, results, "secret.not-inspected"
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
