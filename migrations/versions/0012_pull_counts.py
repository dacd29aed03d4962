"""Pull counts and last-pull times per repository and per manifest; tags by push time

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-01 15:00:00

Kept in tables of their own, written only by the batched flush of services/pulls.py, so
that counting pulls never waits on a push's locks. They go with their repository or
manifest (ON DELETE CASCADE). The index on tags (repository_id, updated_at) serves the
admin API's tags sorted by push time.
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for table, key, parent in (
        ("repository_pulls", "repository_id", "repositories"),
        ("manifest_pulls", "manifest_id", "manifests"),
    ):
        op.create_table(
            table,
            sa.Column(key, sa.Integer(), nullable=False),
            sa.Column("pulls", sa.BigInteger(), nullable=False),
            sa.Column("last_pulled_at", sa.DateTime(timezone=True), nullable=False),
            sa.ForeignKeyConstraint(
                [key], [f"{parent}.id"], name=f"fk_{table}_{key}_{parent}", ondelete="CASCADE"
            ),
            sa.PrimaryKeyConstraint(key, name=f"pk_{table}"),
        )
    op.create_index("ix_tags_repository_id_updated_at", "tags", ["repository_id", "updated_at"])


def downgrade() -> None:
    op.drop_index("ix_tags_repository_id_updated_at", "tags")
    op.drop_table("manifest_pulls")
    op.drop_table("repository_pulls")
