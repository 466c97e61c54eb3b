"""Image references as people write them in settings and on the command line:
``REPOSITORY:TAG`` or ``REPOSITORY@sha256:...`` (``library/alpine:3.20``), without a registry
host, since the registry is the one behind the gatekeeper.

The grammar is the Distribution spec's (``oci/grammar.py``), as ``proxy.names`` checks it on
every request; this module only splits the text and refuses what can never be a reference, so
a typo in the settings stops the start-up with the field's name instead of failing at the
first warm-up.
"""

from __future__ import annotations

from dataclasses import dataclass

from oci.grammar import is_repository_name, is_tag, is_valid_digest


@dataclass(frozen=True)
class ImageReference:
    """One image of the registry behind the gatekeeper, by tag or by digest."""

    repository: str
    reference: str
    """A tag, or a digest (``sha256:...``)."""

    @property
    def by_digest(self) -> bool:
        return ":" in self.reference

    def __str__(self) -> str:
        return f"{self.repository}{'@' if self.by_digest else ':'}{self.reference}"


def parse_image_reference(text: str) -> ImageReference:
    """``library/alpine:3.20`` or ``library/alpine@sha256:...``; ValueError says what is
    wrong. A missing tag is an error, not ``latest``: a list that is kept warm should say
    which tag it means."""
    name, at, digest = text.partition("@")
    if at:
        if not is_valid_digest(digest):
            raise ValueError(f"{text[:300]!r}: the digest must be sha256:<64 hex>")
        repository, reference = name, digest
    else:
        repository, colon, reference = text.rpartition(":")
        if not colon or "/" in reference:
            raise ValueError(
                f"{text[:300]!r}: expected REPOSITORY:TAG or REPOSITORY@sha256:..., e.g. "
                "library/alpine:3.20"
            )
        if not is_tag(reference):
            raise ValueError(f"{text[:300]!r}: {reference[:130]!r} is not a tag")
    first, slash, _ = repository.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        # Clients read a first component like this as a registry host (docker.io/library/...).
        raise ValueError(
            f"{text[:300]!r}: {first[:260]!r} reads as a registry host; name the repository "
            "as the registry behind the gatekeeper serves it (library/alpine:3.20)"
        )
    if not is_repository_name(repository):
        raise ValueError(f"{text[:300]!r}: {repository[:260]!r} is not a repository name")
    return ImageReference(repository, reference)
