"""Built-in check: the image config is what an image config must be.

Cheap and always applicable to images, so even a minimal policy has a real verifier to require.
An image whose config could not be read is skipped (a required skip does not pass); the
verification service also fails it with a finding of its own.
"""

from __future__ import annotations

from typing import Any

from verifiers.base import Finding, Image, Severity, Skipped, index_skip

NAME = "config-sanity"


class ConfigSanity:
    """Structural checks on the image config and its agreement with the manifest."""

    name = NAME
    version = "1"
    reads_layers = False
    """It reads the manifest and the config only: a first pull under a policy requiring only
    it is verified in the serving process (``services.inline``)."""

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        self.options = options or {}

    async def verify(self, image: Image) -> list[Finding] | Skipped:
        skipped = index_skip(image)
        if skipped:
            return skipped
        if image.config is None:
            return Skipped(f"the image config could not be read: {image.config_problem}")
        findings: list[Finding] = []

        def add(rule: str, severity: Severity, title: str, location: str = "config") -> None:
            findings.append(Finding(self.name, rule, severity, title, location))

        config = image.config
        for key in ("architecture", "os"):
            if not isinstance(config.get(key), str) or not config.get(key):
                add(f"config.missing-{key}", Severity.HIGH, f"image config has no {key}")
        rootfs = config.get("rootfs")
        diff_ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
        if not isinstance(diff_ids, list):
            add("config.no-rootfs", Severity.HIGH, "image config has no rootfs.diff_ids")
        elif len(diff_ids) != len(image.layers):
            add(
                "config.layer-count-mismatch",
                Severity.HIGH,
                f"config lists {len(diff_ids)} layers, the manifest {len(image.layers)}",
            )
        inner = config.get("config")
        if inner is not None and not isinstance(inner, dict):
            add("config.malformed", Severity.HIGH, "config.config is not an object")
        return findings
