"""Persistence: SQLAlchemy models and the queries the proxy needs. No policy logic lives here."""
