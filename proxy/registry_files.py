"""What the registry's mounted storage answers without a round trip to the registry.

With ``upstream_storage_root`` set (the registry's ``storage.filesystem.rootdirectory``,
mounted read-only), the gatekeeper reads the same files the registry would read to answer a
request by digest, in Distribution's layout under ``docker/registry/v2``:

- ``blobs/<alg>/<2 hex>/<hex>/data``: the bytes of a blob or manifest, content-addressed;
- ``repositories/<name>/_manifests/revisions/<alg>/<hex>/link``: repository ``name`` holds
  manifest ``<alg>:<hex>`` (the registry removes it when the manifest is deleted);
- ``repositories/<name>/_manifests/tags/<tag>/current/link``: tag ``<tag>`` of ``name``
  points to the manifest whose digest the file holds (the registry rewrites it when the tag is
  pushed again, and removes the tag's folder when its manifest is deleted);
- ``repositories/<name>/_layers/<alg>/<hex>/link``: repository ``name`` holds that blob.

A link file holds the digest it names; one that does not is not believed. A tag is resolved
exactly as the registry resolves it on every request (Distribution's ``tagStore.Get`` reads
that ``current/link`` from the storage driver; nothing caches tags), so reading the file is as
fresh as asking the registry: the digest it holds then goes the way of any manifest by digest
(its revision link in this repository, its bytes hashed). Not in proxy mode: a pull-through
registry asks its remote for a tag first (``proxyTagService.Get``), which no file here knows;
:func:`pulls_through` tells such a storage apart.

The registry writes a link in place (truncate, then write: not atomic), so a read can see an
empty or half-written file: only exactly ``sha256:<64 lower-case hex>`` is believed. Links are
opened without following a symbolic link (the registry never makes one); a link that is one
is not believed. Anything missing, unreadable or inconsistent is ``None``, and the caller goes
to the registry as before: this is a short cut, never a second source of truth.

Names, tags and digests reach here validated (``proxy.names``: no ``..``, no ``/`` in a tag or
a digest, a tag starts with a letter, digit or ``_``), so no path trick gets in. The files are
small (links, capped manifests) and read on the event loop: a page-cache hit costs
microseconds, less than a hop to a thread.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from pathlib import Path

log = logging.getLogger("gatekeeper.registry_files")

_V2 = "docker/registry/v2"
_SHA256 = re.compile(rb"sha256:[0-9a-f]{64}")
_LINK_MAX = 200
_PROXY_STATE = "scheduler-state.json"
"""Where a registry in proxy mode keeps its expiry schedule (at the storage's root)."""


def blob_data_path(root: Path, digest: str) -> Path:
    """The registry's file of blob ``digest`` (``digest`` validated by the caller)."""
    algorithm, _, encoded = digest.partition(":")
    return root / _V2 / "blobs" / algorithm / encoded[:2] / encoded / "data"


def _read_link(path: Path) -> bytes | None:
    """The first bytes of link file ``path`` (not a symbolic link), or None."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        return os.read(fd, _LINK_MAX)
    except OSError:
        return None
    finally:
        os.close(fd)


def _linked(root: Path, name: str, kind: str, digest: str) -> bool:
    """Repository ``name`` links ``digest`` as ``kind`` (``_manifests/revisions``,
    ``_layers``), and the link says so."""
    algorithm, _, encoded = digest.partition(":")
    link = _read_link(root / _V2 / "repositories" / name / kind / algorithm / encoded / "link")
    return link is not None and link.strip() == digest.encode()


def tagged(root: Path, name: str, tag: str) -> str | None:
    """The sha256 digest tag ``tag`` of repository ``name`` points to now, as the registry
    would resolve it (``tag`` validated by the caller); None if the tag is not there or its
    link is not exactly a sha256 digest (half written, tampered, another algorithm)."""
    link = _read_link(root / _V2 / "repositories" / name / "_manifests/tags" / tag / "current/link")
    if link is None or not _SHA256.fullmatch(link):
        return None
    return link.decode()


def pulls_through(root: Path) -> bool:
    """The registry on this storage runs in proxy mode (it keeps an expiry schedule of what it
    fetched): its tags are the remote's, which only the registry asks."""
    return os.path.lexists(root / _PROXY_STATE)


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
    return _checked_data(root, name, digest, limit)


def blob(root: Path, name: str, digest: str, limit: int) -> bytes | None:
    """The bytes of blob ``digest`` if repository ``name`` holds it, at most ``limit`` bytes
    long and hashing to ``digest`` (sha256 only); else None (ask the registry). What the
    verification reads whole (an image config) comes from here without a round trip."""
    if not digest.startswith("sha256:") or not _linked(root, name, "_layers", digest):
        return None
    return _checked_data(root, name, digest, limit)


def _checked_data(root: Path, name: str, digest: str, limit: int) -> bytes | None:
    try:
        fd = os.open(blob_data_path(root, digest), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        with open(fd, "rb") as handle:
            body = handle.read(limit + 1)
    except OSError:
        return None
    if len(body) > limit:
        return None
    if "sha256:" + hashlib.sha256(body).hexdigest() != digest:
        log.error("the registry's file for %s@%s does not hash to its digest", name, digest)
        return None
    return body
