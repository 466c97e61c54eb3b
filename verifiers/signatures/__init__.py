"""Signature verification: cosign keys, keyless identities, Sigstore bundles, thresholds.

Modules, each small: :mod:`keys` (public keys), :mod:`trust` (``trusted_root.json``),
:mod:`settings` (the options), :mod:`policy` (who counts), :mod:`cosign` (the ``.sig`` tag
layout), :mod:`tlog` (log proofs in that layout), :mod:`keyless` (Fulcio certificates),
:mod:`bundle` (Sigstore bundles), :mod:`referrers` (where signatures are found), :mod:`steps`
(numbered steps and their results) and :mod:`verifier` (the ``signatures`` verifier itself).
"""

from verifiers.signatures.verifier import SignatureVerifier

__all__ = ["SignatureVerifier"]
