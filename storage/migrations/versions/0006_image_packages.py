"""Package inventories of images (layer scanning): one row per package, indexed by package.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "image_inventories",
        sa.Column("repository", sa.String(255), primary_key=True),
        sa.Column("digest", sa.String(140), primary_key=True),
        sa.Column("os_id", sa.String(64)),
        sa.Column("os_version_id", sa.String(64)),
        sa.Column("os_codename", sa.String(64)),
        sa.Column("os_pretty_name", sa.String(255)),
        sa.Column("package_count", sa.Integer(), nullable=False),
        sa.Column("scanned_at", TS, nullable=False),
    )
    op.create_table(
        "image_packages",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("repository", sa.String(255), nullable=False),
        sa.Column("digest", sa.String(140), nullable=False),
        sa.Column("ecosystem", sa.String(32), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("version", sa.String(255), nullable=False),
        sa.Column("purl", sa.Text(), nullable=False),
        sa.Column("layer", sa.String(140), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("source_name", sa.String(255)),
        sa.Column("source_version", sa.String(255)),
        sa.Column("arch", sa.String(32)),
    )
    op.create_index("ix_image_packages_image", "image_packages", ["repository", "digest"])
    op.create_index("ix_image_packages_name", "image_packages", ["ecosystem", "name"])
    op.create_index("ix_image_packages_source", "image_packages", ["ecosystem", "source_name"])


def downgrade() -> None:
    op.drop_table("image_packages")
    op.drop_table("image_inventories")
