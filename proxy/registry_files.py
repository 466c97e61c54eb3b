"""What the registry's mounted storage answers without a round trip to the registry.

With ``upstream_storage_root`` set (the registry's ``storage.filesystem.rootdirectory``,
mounted read-only), the gatekeeper reads the same files the registry would read to answer a
request by digest, in Distribution's layout under ``docker/registry/v2``:

- ``blobs/<alg>/<2 hex>/<hex>/data``: the bytes of a blob or manifest, content-addressed;
- ``repositories/<name>/_manifests/revisions/<alg>/<hex>/link``: repository ``name`` holds
  manifest ``<alg>:<hex>`` (the registry removes it when the manifest is deleted);
- ``repositories/<name>/_layers/<alg>/<hex>/link``: repository ``name`` holds that blob.

A link file holds the digest it names; one that does not is not believed. Only digests are
answered here: a tag moves, so it is always asked of the registry (the revalidation the
registry does for us). Anything missing, unreadable or inconsistent is ``None``, and the
caller goes to the registry as before: this is a short cut, never a second source of truth.

Names and digests reach here validated (``proxy.names``: no ``..``, no ``/`` in a digest), so
no path trick gets in. The files are small (links, capped manifests) and read on the event
loop: a page-cache hit costs microseconds, less than a hop to a thread.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

log = logging.getLogger("gatekeeper.registry_files")

_V2 = "docker/registry/v2"


def blob_data_path(root: Path, digest: str) -> Path:
    """The registry's file of blob ``digest`` (``digest`` validated by the caller)."""
    algorithm, _, encoded = digest.partition(":")
    return root / _V2 / "blobs" / algorithm / encoded[:2] / encoded / "data"


def _linked(root: Path, name: str, kind: str, digest: str) -> bool:
    """Repository ``name`` links ``digest`` as ``kind`` (``_manifests/revisions``,
    ``_layers``), and the link says so."""
    algorithm, _, encoded = digest.partition(":")
    link = root / _V2 / "repositories" / name / kind / algorithm / encoded / "link"
    try:
        with open(link, "rb") as handle:
            return handle.read(200).strip() == digest.encode()
    except OSError:
        return False


def blob_size(root: Path, name: str, digest: str) -> int | None:
    """The size of blob ``digest`` if repository ``name`` holds it (as the registry's own
    HEAD would say), else None."""
    if not _linked(root, name, "_layers", digest):
        return None
    try:
        return os.stat(blob_data_path(root, digest)).st_size
    except OSError:
        return None


def manifest(root: Path, name: str, digest: str, limit: int) -> bytes | None:
    """The bytes of manifest ``digest`` if repository ``name`` holds it, at most ``limit``
    bytes long and hashing to ``digest`` (sha256 only); else None."""
    if not digest.startswith("sha256:") or not _linked(root, name, "_manifests/revisions", digest):
        return None
    try:
        with open(blob_data_path(root, digest), "rb") as handle:
            body = handle.read(limit + 1)
    except OSError:
        return None
    if len(body) > limit:
        return None
    if "sha256:" + hashlib.sha256(body).hexdigest() != digest:
        log.error("the registry's file for %s@%s does not hash to its digest", name, digest)
        return None
    return body
