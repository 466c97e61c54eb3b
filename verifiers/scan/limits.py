"""Limits on reading one layer, each an option of the ``inventory`` verifier.

Defaults fit real images (a large CUDA or node layer: ~10 GiB, ~300k entries, ratios under 20:1)
while stopping hostile ones early: a gzip bomb is caught by the ratio after ``ratio_grace_bytes``,
long before the size limit.
"""

from __future__ import annotations

import hashlib
import json

from pydantic import BaseModel, Field

GiB = 1024**3
MiB = 1024**2


class ScanLimits(BaseModel):
    """Options of ``[verifiers.inventory.options]``; each exceeded limit is a finding."""

    model_config = {"extra": "forbid", "frozen": True}

    max_layer_bytes: int = Field(default=16 * GiB, ge=1)
    """Decompressed size of one layer."""
    max_compression_ratio: float = Field(default=200.0, gt=1)
    """Decompressed bytes per compressed byte, enforced once ``ratio_grace_bytes`` are out."""
    ratio_grace_bytes: int = Field(default=64 * MiB, ge=0)
    max_entries: int = Field(default=500_000, ge=1)
    """Tar entries in one layer."""
    max_path_length: int = Field(default=4096, ge=16)
    """Bytes in one entry path (PATH_MAX on Linux)."""
    max_header_bytes: int = Field(default=1 * MiB, ge=512)
    """One PAX or GNU long-name header (read into memory, so bounded)."""
    max_file_bytes: int = Field(default=32 * MiB, ge=1)
    """One file a scanner asks to read (package databases); larger ones are skipped."""
    max_seconds: float = Field(default=120.0, gt=0)
    """Wall time to read one layer."""

    def fingerprint(self) -> str:
        """Short hash of the limits: cached results are only reused under the same limits."""
        canonical = json.dumps(self.model_dump(), sort_keys=True).encode()
        return hashlib.sha256(canonical).hexdigest()[:8]
