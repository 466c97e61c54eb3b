"""The Distribution spec's grammar for repository names, tags and digests.

``proxy.names`` checks every request against it, ``config.references`` the references written
in settings, and the signatures verifier the ``signature_repository`` option: one definition,
so a name one of them accepts is never refused by another.
"""

from __future__ import annotations

import re

_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
NAME_RE = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
"""distribution-spec ``<name>``: components ``[a-z0-9]+((\\.|_|__|-+)[a-z0-9]+)*`` joined by
``/`` (match it with ``fullmatch``)."""
MAX_NAME_LENGTH = 255
"""The spec lets registries refuse longer names; Distribution does, so the gatekeeper does."""
TAG_RE = re.compile(r"[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}")
"""distribution-spec ``<reference>`` as a tag: up to 128 characters, not starting with . or -."""
_RESTRICTED_NAME = r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}"
MEDIA_TYPE_RE = re.compile(rf"{_RESTRICTED_NAME}/{_RESTRICTED_NAME}")
"""RFC 6838 ``type/subtype`` (section 4.2's restricted names, no parameters), which the image
spec requires of every ``mediaType`` and ``artifactType``."""
_KNOWN_DIGESTS = {"sha256": re.compile(r"[a-f0-9]{64}"), "sha512": re.compile(r"[a-f0-9]{128}")}


def is_repository_name(name: str) -> bool:
    """Whether ``name`` is a repository name the registry would accept (without a host)."""
    return len(name) <= MAX_NAME_LENGTH and NAME_RE.fullmatch(name) is not None


def is_tag(reference: str) -> bool:
    return TAG_RE.fullmatch(reference) is not None


def is_media_type(value: str) -> bool:
    return MEDIA_TYPE_RE.fullmatch(value) is not None


def is_valid_digest(digest: str) -> bool:
    """A digest of a registered algorithm (sha256, sha512) with its exact encoded length;
    anything else (another algorithm, upper-case hex) is refused rather than passed on."""
    algorithm, _, encoded = digest.partition(":")
    strict = _KNOWN_DIGESTS.get(algorithm)
    return strict is not None and strict.fullmatch(encoded) is not None
