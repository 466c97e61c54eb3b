"""Notary Project (Notation) signatures, beside cosign's.

One module per job: :mod:`settings` (the trust policy and trust store options, in Notation's
own shape), :mod:`identity` (``x509.subject:`` trusted identities), :mod:`truststore` (the
``x509/<type>/<name>`` directories), :mod:`trustpolicy` (selection by registry scope, and what
each verification level enforces), :mod:`envelope` (what both envelope formats share),
:mod:`envelope_jws` and :mod:`envelope_cose` (the two formats), :mod:`chain` (certificate
requirements and trust), :mod:`timestamp` (RFC 3161 countersignatures), :mod:`revocation`
(CRL files) and :mod:`verify` (the steps of one signature, as a signature candidate).
"""
