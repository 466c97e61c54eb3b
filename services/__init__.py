"""The gatekeeper's background work: the verification service and its job queue, re-evaluation
after a policy or advisory change, the scheduler (re-scans, advisory mirror syncs), enrolment,
and the event bus that tells listeners about verdict changes.

May import ``verifiers``, ``storage``, ``config`` and ``oci``; not ``proxy`` (the HTTP side,
which imports this package) but for the exceptions listed in ``tests/unit/test_layers.py``.
"""
