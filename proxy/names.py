"""The Distribution spec's grammar for repository names, tags and digests (``oci/grammar.py``),
checked before any request reaches the upstream, and refused as OCI errors.

Names are checked on the raw path too: a proxy that lets ``a/../b`` or ``a%2Fb`` through can be
talked into acting on a repository other than the one a permission check looked at.
"""

from __future__ import annotations

from oci.errors import Code, OCIError
from oci.grammar import is_repository_name, is_tag, is_valid_digest


def check_name(name: str) -> str:
    """Return ``name`` if it is a valid repository name, else raise NAME_INVALID."""
    if not is_repository_name(name):
        raise OCIError(
            Code.NAME_INVALID,
            f"invalid repository name {name[:300]!r}: lower-case components of [a-z0-9._-] "
            "separated by '/'",
            {"name": name[:300]},
        )
    return name


def is_digest(reference: str) -> bool:
    return ":" in reference


def check_digest(digest: str, code: Code = Code.DIGEST_INVALID) -> str:
    """Return ``digest`` if well formed, else raise."""
    if not is_valid_digest(digest):
        raise OCIError(
            code,
            f"invalid digest {digest[:200]!r}: expected sha256:<64 hex> or sha512:<128 hex>",
            {"digest": digest[:200]},
        )
    return digest


def check_reference(reference: str) -> str:
    """A manifest reference is a tag or a digest."""
    if is_digest(reference):
        return check_digest(reference)
    if not is_tag(reference):
        raise OCIError(
            Code.REFERENCE_INVALID,
            f"invalid tag {reference[:200]!r}: up to 128 of [A-Za-z0-9._-], "
            "not starting with . or -",
            {"reference": reference[:200]},
        )
    return reference


def check_raw_path(raw_path: str) -> None:
    """Refuse dot segments and encoded separators before routing normalises them away."""
    path = raw_path.split("?", 1)[0]
    lowered = path.lower()
    segments = path.split("/")
    if "." in segments or ".." in segments or "%2f" in lowered or "%5c" in lowered or "//" in path:
        raise OCIError(
            Code.NAME_INVALID,
            "path contains dot segments or encoded separators",
            {"path": raw_path[:300]},
        )
    if "%2e" in lowered or "\\" in path:
        raise OCIError(Code.NAME_INVALID, "path contains encoded dots", {"path": raw_path[:300]})
