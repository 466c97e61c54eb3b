"""Re-evaluation without layers: whether a finding has a fix, and why a verdict was decided.

``findings.fix`` lets a policy say "findings with no known fix only report" when it re-decides
from stored findings; ``verdicts.trigger`` records what made the latest decision (a verification,
an advisory import, a policy change); ``ix_image_packages_image`` also covers the columns
re-evaluation filters on, so it reads only the packages an advisory names.

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


IMAGE_INDEX = "ix_image_packages_image"


def upgrade() -> None:
    with op.batch_alter_table("findings") as batch:
        batch.add_column(sa.Column("fix", sa.String(255)))
    with op.batch_alter_table("verdicts") as batch:
        batch.add_column(sa.Column("trigger", sa.Text()))
    # The per-image index also covers the columns re-evaluation filters on.
    op.drop_index(IMAGE_INDEX, table_name="image_packages")
    op.create_index(
        IMAGE_INDEX,
        "image_packages",
        ["repository", "digest", "ecosystem", "name", "source_name"],
    )


def downgrade() -> None:
    op.drop_index(IMAGE_INDEX, table_name="image_packages")
    op.create_index(IMAGE_INDEX, "image_packages", ["repository", "digest"])
    with op.batch_alter_table("verdicts") as batch:
        batch.drop_column("trigger")
    with op.batch_alter_table("findings") as batch:
        batch.drop_column("fix")
