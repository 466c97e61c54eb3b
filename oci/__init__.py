"""The OCI grammar, once: what a repository name, a tag and a digest may look like
(:mod:`oci.grammar`), where cosign keeps what it attaches to an image
(:mod:`oci.cosign_tags`), the spec's error codes and the error a client is answered with
(:mod:`oci.errors`), manifest media types and the strict manifest parser with the records it
returns (:mod:`oci.manifests`), and depth-bounded JSON for untrusted documents
(:mod:`oci.boundedjson`).

The lowest package: it imports nothing of the gatekeeper's own, so every other package
(``config``, ``verifiers``, ``storage``, ``services``, ``proxy``, ``cli``) may import
it. It says what is well formed and raises :class:`oci.errors.OCIError` when it is not; how
that error is rendered (an OCI error response, a settings error, a failed verification) is each
caller's business.
"""
