"""Persistence: SQLAlchemy models, the queries the other packages need, and the Alembic
migrations (SQLite or PostgreSQL). No policy logic lives here; database failures leave it as
its own error type (``storage.errors``).

May import ``config``, ``verifiers`` (the result types it stores) and ``oci``; the one
``proxy`` import (``audit_chain``: the access log's hash chain) is a known exception.
"""
