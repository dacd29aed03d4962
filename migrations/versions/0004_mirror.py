"""mirror: single-flight blob fetches and counters

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27 21:36:30.527522
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "blob_fetches",
        sa.Column("digest", sa.String(length=160), nullable=False),
        sa.Column("upload_id", sa.String(length=36), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=True),
        sa.Column("written", sa.BigInteger(), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("digest", name=op.f("pk_blob_fetches")),
    )
    op.create_table(
        "mirror_counters",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_mirror_counters")),
    )


def downgrade() -> None:
    op.drop_table("mirror_counters")
    op.drop_table("blob_fetches")
