"""The layer scanner's errors, under one base that is a :class:`~verifiers.base.VerifierError`.

Layer problems (a damaged archive, a limit hit) are the content's: the scanner turns them into
findings with their ``rule_id`` and never lets them out of the verifier. Reading failures are
the upstream's and leave as ``SourceUnavailable``. What remains reaching a caller is a
verifier error, so a caller that handles "a verifier refused on purpose" handles these too::

    VerifierError
     +-- ScanError
          +-- TarError                  tarstream: the archive is damaged (layer.corrupt, ...)
          |    +-- TarTruncated, HeaderTooLarge
          +-- LimitExceeded             decompress: size, ratio, entry or time limit
          +-- CorruptStream             decompress: the compressed stream is damaged
          +-- UpstreamFailed            bridge: reading the blob failed (not the layer's fault)
          +-- HeaderError               ecosystems.rpm: a truncated RPM header (also ValueError)
          +-- BuildInfoError            ecosystems.golang: Go build info that does not parse
                                        (also ValueError)
"""

from __future__ import annotations

from verifiers.base import VerifierError


class ScanError(VerifierError):
    """Base of the errors raised while reading layers into an inventory."""
