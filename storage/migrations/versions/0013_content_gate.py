"""Verdicts on content: findings know the blob that carries them, holds attach to blobs, and a
manifest records what it is about and what its content turned out to be.

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

IMAGE_MANIFESTS = (
    "'application/vnd.oci.image.manifest.v1+json', "
    "'application/vnd.docker.distribution.manifest.v2+json'"
)
IMAGE_CONFIGS = (
    "'application/vnd.oci.image.config.v1+json', 'application/vnd.docker.container.image.v1+json'"
)
INDEXES = (
    "'application/vnd.oci.image.index.v1+json', "
    "'application/vnd.docker.distribution.manifest.list.v2+json'"
)


def upgrade() -> None:
    with op.batch_alter_table("findings") as batch:
        batch.add_column(sa.Column("blob", sa.String(140)))
        batch.add_column(sa.Column("origin", sa.String(400)))
        batch.create_index("ix_findings_blob", ["blob", "severity"])
    with op.batch_alter_table("manifests") as batch:
        batch.add_column(sa.Column("about_digest", sa.String(140)))
        batch.add_column(sa.Column("content_kind", sa.String(16)))
        batch.create_index("ix_manifests_about", ["repository", "about_digest"])
    op.execute("UPDATE manifests SET about_digest = subject_digest")
    # What earlier versions indexed as images by their media types counts as image content
    # (its blobs keep their results); everything else is classified at its next verification.
    op.execute(
        f"UPDATE manifests SET content_kind = 'image' WHERE media_type IN ({IMAGE_MANIFESTS}) "
        f"AND artifact_type IN ({IMAGE_CONFIGS}) AND subject_digest IS NULL"
    )
    op.execute(f"UPDATE manifests SET content_kind = 'index' WHERE media_type IN ({INDEXES})")
    op.create_table(
        "content_holds",
        sa.Column("blob", sa.String(140), primary_key=True),
        sa.Column("repository", sa.String(255), primary_key=True),
        sa.Column("digest", sa.String(140), primary_key=True),
        sa.Column("actor", sa.String(255), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_content_holds_image", "content_holds", ["repository", "digest"])
    # Holds made before this revision cover the held image's content from now on: its config,
    # and each layer that no other pullable image references.
    op.execute(
        "INSERT INTO content_holds (blob, repository, digest, actor, reason, created_at) "
        "SELECT DISTINCT r.digest, v.repository, v.digest, v.held_by, "
        "'held before holds covered content', CURRENT_TIMESTAMP "
        "FROM verdicts v JOIN manifests m ON m.repository = v.repository AND m.digest = v.digest "
        "JOIN manifest_refs r ON r.manifest_id = m.id "
        "WHERE v.held_by IS NOT NULL AND v.state = 'quarantined' "
        "AND r.kind IN ('config', 'layer') AND (r.kind = 'config' OR NOT EXISTS ("
        "SELECT 1 FROM manifest_refs r2 JOIN manifests m2 ON m2.id = r2.manifest_id "
        "JOIN verdicts v2 ON v2.repository = m2.repository AND v2.digest = m2.digest "
        "WHERE r2.digest = r.digest AND v2.state IN ('passed', 'released') AND m2.id <> m.id))"
    )


def downgrade() -> None:
    op.drop_index("ix_content_holds_image", table_name="content_holds")
    op.drop_table("content_holds")
    with op.batch_alter_table("manifests") as batch:
        batch.drop_index("ix_manifests_about")
        batch.drop_column("content_kind")
        batch.drop_column("about_digest")
    with op.batch_alter_table("findings") as batch:
        batch.drop_index("ix_findings_blob")
        batch.drop_column("origin")
        batch.drop_column("blob")
