"""Alembic migrations for the gatekeeper's schema."""
