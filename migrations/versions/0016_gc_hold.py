"""gc_hold: a hold on garbage collection's deletions, for backups

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-01 23:40:00

One row. While its `until` is ahead, no collection pass removes a blob, so the blobs a
database backup references are all still there when the blob store is copied after it
(`registry gc hold`, `registry gc release`; README, "Backups").
"""

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "gc_hold",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("holder", sa.String(length=255), server_default="", nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_gc_hold")),
    )
    op.execute("INSERT INTO gc_hold (id, holder) VALUES (1, '')")


def downgrade() -> None:
    op.drop_table("gc_hold")
