"""Cosign's tag scheme: what it attaches to image ``sha256:<hex>`` it pushes under the tags
``sha256-<hex>.sig`` (signatures), ``.att`` (attestations) and ``.sbom`` (SBOMs).

The proxy reads the scheme backwards (a pushed ``.sig`` tag is about another image, whose
verdict may change); the signatures verifier forwards (where to look for an image's
signatures). Both take it from here so the two never disagree about which tag is which.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

Kind = Literal["sig", "att", "sbom"]
_KINDS: dict[str, Kind] = {"sig": "sig", "att": "att", "sbom": "sbom"}
_TAG = re.compile(r"(sha256)-([a-f0-9]{64})\.(sig|att|sbom)")


@dataclass(frozen=True)
class CosignTag:
    """A tag in cosign's scheme, read back."""

    subject: str
    """The digest of the image the tagged manifest is about (``sha256:<hex>``)."""
    kind: Kind
    """``sig``, ``att`` or ``sbom``."""


def cosign_tag(digest: str, kind: Kind = "sig") -> str:
    """``sha256:<hex>`` -> ``sha256-<hex>.sig`` (or ``.att``, ``.sbom``)."""
    algorithm, _, encoded = digest.partition(":")
    return f"{algorithm}-{encoded}.{kind}"


def read_cosign_tag(tag: str) -> CosignTag | None:
    """The image a tag of cosign's scheme is about, or ``None`` for any other tag."""
    found = _TAG.fullmatch(tag)
    if found is None:
        return None
    return CosignTag(subject=f"{found.group(1)}:{found.group(2)}", kind=_KINDS[found.group(3)])
