"""JSON from someone else, parsed with a limit on how deeply it nests.

Python's parser recurses once per level: ``[`` repeated a few thousand times raises
``RecursionError``, which is not a ``ValueError`` and so slipped past every ``except
ValueError`` around a parse (a cosign transparency-log annotation crashed the signature
verifier instead of failing its step). Less deep documents still parse into structures that
later recursive code (canonical JSON, the database's JSON columns) may choke on.

:func:`loads` is ``json.loads`` for signed or untrusted documents (manifests, image configs,
signature payloads and annotations, Sigstore statements, OSV records): a document nested deeper
than ``max_depth`` raises :class:`JSONTooDeep`, a ``ValueError`` like json's own decode errors,
so each caller's existing ``except ValueError`` turns it into that component's own error
(``StepFailed``, ``MANIFEST_INVALID``, ``OsvError``).

The depth is measured before parsing, in linear time: strings are blanked out with a regular
expression that neither backtracks nor rescans, and the remaining brackets are counted. The
count is exact for every valid document and for the valid prefix of an invalid one, which is
all the parser would reach before giving up.

It lives in ``oci`` because manifest parsing (``oci/manifests.py``) reads manifests with it and
``oci`` imports nothing above itself; verifiers, proxy and cli parse their documents with it too.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from itertools import accumulate
from typing import Any

MAX_DEPTH = 64
"""Far above any real manifest, config, payload or OSV record (they nest 4 to 10 levels)."""

# A string, or an unterminated one up to the end: every quote the scan meets starts a match, and
# no match is retried from inside another, so blanking strings is linear in the length.
_STRING = re.compile(r'"[^"\\]*+(?:\\.[^"\\]*+)*+(?:"|\\?\Z)', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]++")
_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


class JSONTooDeep(ValueError):
    """The document nests arrays and objects deeper than the limit."""


def depth(text: str) -> int:
    """How deeply the arrays and objects of ``text`` nest (0 for a scalar)."""
    skeleton = _NOT_BRACKET.sub("", _STRING.sub("", text))
    return max(accumulate(map(_STEP.__getitem__, skeleton)), default=0)


def loads(
    data: bytes | str,
    *,
    max_depth: int = MAX_DEPTH,
    parse_constant: Callable[[str], Any] | None = None,
) -> Any:
    """``json.loads(data)``, refusing documents nested deeper than ``max_depth``
    (``parse_constant`` as for ``json.loads``: NaN and Infinity)."""
    text = (
        data if isinstance(data, str) else data.decode(json.detect_encoding(data), "surrogatepass")
    )
    # Fewer brackets than the limit cannot nest deeper than it: most documents stop here.
    if text.count("[") + text.count("{") > max_depth and depth(text) > max_depth:
        raise JSONTooDeep(f"nested deeper than {max_depth} levels")
    return json.loads(text, parse_constant=parse_constant)
