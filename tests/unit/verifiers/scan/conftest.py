"""Tar layers built member by member for the scan tests (the fakes of the scan package's
interfaces are in ``tests/fakes/layers.py``)."""

from __future__ import annotations

import io
import tarfile
from collections.abc import Iterable, Iterator


def tar_bytes(members: Iterable[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    """A tar of explicit members (names and types as given, hostile ones included)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return raw.getvalue()


def files(entries: dict[str, bytes]) -> Iterator[tuple[tarfile.TarInfo, bytes | None]]:
    for name, data in entries.items():
        yield tarfile.TarInfo(name), data


def special(name: str, kind: bytes, link: str = "") -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    return info, None
