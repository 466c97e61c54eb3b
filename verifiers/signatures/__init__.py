"""Signature verification: cosign keys, keyless identities, Sigstore bundles, thresholds.

Modules, each small: :mod:`keys` (public keys), :mod:`trust` (``trusted_root.json``),
:mod:`settings` (the options), :mod:`policy` (who counts), :mod:`cosign` (the ``.sig`` tag
layout), :mod:`tlog` (log proofs in that layout), :mod:`keyless` (Fulcio certificates),
:mod:`bundle` (Sigstore bundles), :mod:`referrers` (where signatures are found), :mod:`steps`
(numbered steps and their results) and :mod:`verifier` (the ``signatures`` verifier itself).

:class:`SignatureVerifier` is imported on first use (PEP 562): settings import :mod:`keys` to
validate a policy's keys, and importing the package must not pull in the verifier's stack
(Notary's timestamps and revocation, Sigstore: about 15 MiB resident) in every process of a
gatekeeper that checks no signature (``verifiers/registry.py`` loads it only when enabled).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from verifiers.signatures.verifier import SignatureVerifier

__all__ = ["SignatureVerifier"]


def __getattr__(name: str) -> Any:
    if name == "SignatureVerifier":
        from verifiers.signatures.verifier import SignatureVerifier

        return SignatureVerifier
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
