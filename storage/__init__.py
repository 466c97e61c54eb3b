"""Persistence: SQLAlchemy models, the queries the other packages need, and the Alembic
migrations (SQLite or PostgreSQL). No policy logic lives here; database failures leave it as
its own error type (``storage.errors``).

May import ``config``, ``verifiers`` (the result types it stores) and ``oci`` (the manifest
records it indexes); never ``upstream``, ``services``, ``proxy`` or ``cli``. The access log's
hash chain is here whole: its pure rules (``audit_hashing``) and its rows (``audit_chain``).
"""
