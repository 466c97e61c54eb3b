"""The gatekeeper's background work: the verification service and its job queue, re-evaluation
after a policy or advisory change, the scheduler (re-scans, advisory mirror syncs), enrolment,
and the event bus that tells listeners about verdict changes.

May import ``upstream`` (the client it fetches what it verifies through), ``verifiers``,
``storage``, ``config`` and ``oci``; never ``proxy`` (the HTTP side, which imports this
package) nor ``cli``.
"""
