"""Vulnerability matching's errors, under one base that is a
:class:`~verifiers.base.VerifierError`::

    VerifierError
     +-- VulnsError
          +-- OsvError        osv: a record that is not valid OSV (also ValueError; skipped
          |                   with a message by the readers)
          +-- VersionError    versions: a version the ecosystem's order cannot parse (also
          |                   ValueError; that range is not matched)
          +-- LoadError       load: a source that cannot be read as a whole (not a zip, over a
                              total cap)
"""

from __future__ import annotations

from verifiers.base import VerifierError


class VulnsError(VerifierError):
    """Base of the errors raised while reading advisories and matching them."""
