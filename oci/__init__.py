"""The OCI grammar, once: what a repository name, a tag and a digest may look like
(:mod:`oci.grammar`), and where cosign keeps what it attaches to an image
(:mod:`oci.cosign_tags`).

The lowest package: it imports nothing of the gatekeeper's own, so every other package
(``config``, ``verifiers``, ``storage``, ``services``, ``proxy``, ``cli``) may import it. It
only says what is well formed; how a bad name is refused (an OCI error response, a settings
error) is each caller's business.
"""
