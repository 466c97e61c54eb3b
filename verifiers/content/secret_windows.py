"""Secrets in what is not a whole text file: binaries, and files too large to hold, which go by
as a stream in chunks.

A binary (a NUL in its first KiB) is searched by the rules whose match holds an anchor, and only
around their anchors (:func:`near_anchors`): a NUL in front of a file full of AWS keys does not
hide them, and a 40 MB Go binary costs one pass of the anchor pattern rather than a search by
every rule. The generic rule never reads a binary: random bytes next to any ``key=`` would be
noise. A file over the scanner's ``max_file_bytes`` is searched as it streams by, in windows
that overlap (:class:`WindowedSearch`), so memory stays bounded and a secret across a chunk
boundary is found, and found once.

Both decode one byte to one character (``ascii``; a byte over 127 becomes U+FFFD, which no rule
matches), so an offset in the text is an offset in the bytes. Whole text files are read as
UTF-8 by ``secret_patterns.find``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace

from verifiers.content import secret_patterns as patterns
from verifiers.content.secret_patterns import Match
from verifiers.scan.limits import MiB

BINARY_SNIFF = 1024
"""Bytes looked at for a NUL to call a file binary (as git and grep do)."""
WINDOW = 1 * MiB
"""New bytes searched per window of a streamed file."""
OVERLAP = 4096
"""Bytes of one window searched again at the start of the next."""
MARGIN = 2048
"""Bytes a match must end before its window's end to be reported from it: what a rule reads
after a match (the body of a PEM key, the rest of a token) is then in the window. The other
``OVERLAP - MARGIN`` bytes are the context before any match the next window reports."""

Search = Callable[[bytes, bool], list[Match]]
"""``search(data, binary)``: the matches in one window, ``end`` offsets into ``data``."""


def is_binary(head: bytes) -> bool:
    """Whether a file starting with ``head`` is searched as a binary (no generic rule)."""
    return b"\0" in head[:BINARY_SNIFF]


def near_anchors(data: bytes) -> list[Match]:
    """:func:`~verifiers.content.secret_patterns.keys_and_tokens` in ``data``, searched only in
    the stretches around their anchors; ``end`` offsets are into ``data``."""
    found: list[Match] = []
    for start, stop in _stretches(data):
        text = data[start:stop].decode("ascii", "replace")
        found += (replace(m, end=start + m.end) for m in patterns.keys_and_tokens(text))
    return found


def _stretches(data: bytes) -> Iterator[tuple[int, int]]:
    """(start, stop) around each anchor, merged where they meet."""
    start = stop = -1
    for anchor in patterns.ANCHORS.finditer(data):
        low = max(anchor.start() - patterns.REACH_BEFORE, 0)
        if low > stop >= 0:
            yield start, stop
        if low > stop:
            start = low
        stop = min(anchor.end() + patterns.REACH_AFTER, len(data))
    if stop >= 0:
        yield start, stop


def search_bytes(path: str, data: bytes, min_entropy: float, *, binary: bool) -> list[Match]:
    """Every secret in ``data``: a binary file at ``path``, or a window of a large one.

    As ``secret_patterns.find`` does for a text file: client-config credentials and the
    specific rules, or else the generic rule (never on a binary); the service account's JSON
    rule reads whole documents only (its key is still a ``secret.private-key`` here)."""
    found = near_anchors(data)
    if not (patterns.is_client_config(path) or (not binary and patterns.is_config(path))):
        return found
    text = data.decode("ascii", "replace")
    found = patterns.registry_credentials(path, text) + found
    return found if found or binary else patterns.generic(path, text, min_entropy)


class WindowedSearch:
    """A :class:`~verifiers.scan.reader.ChunkSink` that searches one file in windows.

    Chunks are gathered to ``window`` bytes and searched behind the last :data:`OVERLAP` bytes
    of the window before. A match is reported from a window if it ends after the point the
    window before decided up to, and at least :data:`MARGIN` bytes before this window's end;
    the window then decides up to that point. The last window (at ``close``) decides the rest.
    So each match is reported once, from a window that holds it whole with what follows it,
    as long as it is at most ``OVERLAP - MARGIN`` bytes long (the rules' matches are shorter).
    Whether the file is binary is decided by its first :data:`BINARY_SNIFF` bytes, as for a
    file read whole. Memory: at most ``window`` plus one chunk plus :data:`OVERLAP` bytes.
    """

    def __init__(
        self, search: Search, report: Callable[[Match], None], *, window: int = WINDOW
    ) -> None:
        self._search = search
        self._report = report
        self._window = max(window, OVERLAP)
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._tail = b""
        self._tail_at = 0
        """Offset in the file of the tail's first byte."""
        self._decided = 0
        """Offset in the file up to which every match end has been judged."""
        self._binary: bool | None = None

    def feed(self, chunk: bytes) -> None:
        self._pending.append(chunk)
        self._pending_bytes += len(chunk)
        if self._pending_bytes >= self._window:
            self._step(last=False)

    def close(self) -> None:
        self._step(last=True)

    def _step(self, *, last: bool) -> None:
        data = self._tail + b"".join(self._pending)
        self._pending, self._pending_bytes = [], 0
        if self._binary is None:  # the first window starts at the file's first byte
            self._binary = is_binary(data)
        end = self._tail_at + len(data)
        decide = end if last else end - MARGIN
        for match in self._search(data, self._binary):
            if self._decided < self._tail_at + match.end <= decide:
                self._report(match)
        self._decided = decide
        self._tail = data[-OVERLAP:]
        self._tail_at = end - len(self._tail)
