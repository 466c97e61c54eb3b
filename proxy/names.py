"""The Distribution spec's grammar for repository names, tags and digests, checked before any
request reaches the upstream.

Names are checked on the raw path too: a proxy that lets ``a/../b`` or ``a%2Fb`` through can be
talked into acting on a repository other than the one a permission check looked at.
"""

from __future__ import annotations

import re

from proxy.errors import Code, OCIError

# distribution-spec <name>: components [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)* joined by '/'
_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
NAME_RE = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
TAG_RE = re.compile(r"[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}")
_KNOWN_DIGESTS = {"sha256": re.compile(r"[a-f0-9]{64}"), "sha512": re.compile(r"[a-f0-9]{128}")}
MAX_NAME_LENGTH = 255


def check_name(name: str) -> str:
    """Return ``name`` if it is a valid repository name, else raise NAME_INVALID."""
    if len(name) > MAX_NAME_LENGTH or not NAME_RE.fullmatch(name):
        raise OCIError(
            Code.NAME_INVALID,
            f"invalid repository name {name[:300]!r}: lower-case components of [a-z0-9._-] "
            "separated by '/'",
            {"name": name[:300]},
        )
    return name


def is_digest(reference: str) -> bool:
    return ":" in reference


def is_valid_digest(digest: str) -> bool:
    """A digest of a registered algorithm (sha256, sha512) with its exact encoded length."""
    algorithm, _, encoded = digest.partition(":")
    strict = _KNOWN_DIGESTS.get(algorithm)
    return strict is not None and bool(strict.fullmatch(encoded))


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
    if not TAG_RE.fullmatch(reference):
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
