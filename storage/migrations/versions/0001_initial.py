"""Initial schema: manifest index, tags and the access log.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "manifests",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("repository", sa.String(255), nullable=False),
        sa.Column("digest", sa.String(140), nullable=False),
        sa.Column("media_type", sa.String(255), nullable=False),
        sa.Column("artifact_type", sa.String(255)),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("config_digest", sa.String(140)),
        sa.Column("subject_digest", sa.String(140)),
        sa.Column("annotations", sa.JSON()),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("repository", "digest", name="uq_manifests_repo_digest"),
    )
    op.create_index("ix_manifests_subject", "manifests", ["repository", "subject_digest"])
    op.create_table(
        "manifest_refs",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column(
            "manifest_id",
            BigId,
            sa.ForeignKey("manifests.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("digest", sa.String(140), nullable=False),
        sa.Column("media_type", sa.String(255), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("platform", sa.JSON()),
    )
    op.create_index("ix_manifest_refs_digest", "manifest_refs", ["digest"])
    op.create_table(
        "tags",
        sa.Column("repository", sa.String(255), primary_key=True),
        sa.Column("tag", sa.String(128), primary_key=True),
        sa.Column("digest", sa.String(140), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "access_log",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("request_id", sa.String(64), nullable=False),
        sa.Column("client_addr", sa.String(64)),
        sa.Column("identity", sa.String(255), nullable=False),
        sa.Column("method", sa.String(16), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("repository", sa.String(255)),
        sa.Column("reference", sa.String(255)),
        sa.Column("digest", sa.String(140)),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("bytes_in", sa.BigInteger(), nullable=False),
        sa.Column("bytes_out", sa.BigInteger(), nullable=False),
        sa.Column("duration_ms", sa.Float(), nullable=False),
        sa.Column("upstream_status", sa.Integer()),
        sa.Column("decision", sa.String(32)),
        sa.Column("reason", sa.Text()),
        sa.Column("error_code", sa.String(64)),
    )
    op.create_index("ix_access_log_time", "access_log", ["time"])
    op.create_index("ix_access_log_repository", "access_log", ["repository", "time"])
    op.create_index("ix_access_log_identity", "access_log", ["identity", "time"])


def downgrade() -> None:
    op.drop_table("access_log")
    op.drop_table("tags")
    op.drop_table("manifest_refs")
    op.drop_table("manifests")
