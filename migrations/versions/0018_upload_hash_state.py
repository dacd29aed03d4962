"""upload hash state: a chunked upload's running hash, and who is writing to it

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-02 15:00:00

A session's digest algorithm (sha256, or what `?digest-algorithm=` asked for at the POST),
the saved state of its running hash and how many bytes that covers, so that any worker or
replica continues the hash where the last chunk left it; and the request writing to the
session now, so that chunks of one session are written one at a time (services/uploads.py).
"""

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ALTERs: a batch would recreate the table on SQLite.
    op.add_column(
        "uploads",
        sa.Column("algorithm", sa.String(length=16), nullable=False, server_default="sha256"),
    )
    op.add_column("uploads", sa.Column("hashed", sa.BigInteger(), nullable=True))
    op.add_column("uploads", sa.Column("hash_state", sa.LargeBinary(), nullable=True))
    op.add_column("uploads", sa.Column("writer", sa.String(length=36), nullable=True))
    op.add_column("uploads", sa.Column("writing_since", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("uploads") as batch:
        for column in ("writing_since", "writer", "hash_state", "hashed", "algorithm"):
            batch.drop_column(column)
