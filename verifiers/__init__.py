"""Image verifiers: each check is a small class behind one protocol (``base.Verifier``) that
returns findings; ``pipeline`` runs them concurrently with timeouts and ``policy`` turns their
outcomes into a verdict. Nothing here knows about HTTP servers or SQL: images arrive with an
async blob opener, and results leave as frozen dataclasses.

May import ``config`` and ``oci`` only (``tests/unit/test_layers.py``).
"""
