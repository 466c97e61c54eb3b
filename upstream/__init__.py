"""The gatekeeper's client of the upstream registry: the one shared connection and its own
upstream credentials (``client``), following the registry's redirects to object storage
(``redirects``), the checked, streamed reads verification makes through it (``reads``: the
read interfaces of ``verifiers.base``) and a bounded read of a body (``bodies``).

A package of its own, below ``proxy`` and ``services``, because both talk to the upstream the
same way: the handlers forward clients' requests through it, the verification service and
enrolment fetch what they verify through it, with the same redirects, limits and errors
(:class:`oci.errors.OCIError`). Forwarding a client's request (headers by allow-list, bodies
relayed, URLs rewritten) is HTTP and stays in ``proxy/forward.py``.

May import ``storage`` (the gatekeeper's index, for the referrers a verifier reads),
``verifiers`` (the read interfaces it implements), ``config`` and ``oci``; never ``services``,
``proxy`` or ``cli``.
"""
