"""upload claims name their process: uploads.writer up to 255 characters

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-04 05:00:00

A writer's claim on an upload session was a random UUID, so a claim left by a process
killed mid-chunk blocked the session until it was 120 s old. It now starts with the
holding process (host, pid namespace, pid, start time: registry/process.py), which a
process of the same host can see has ended.
"""

import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("uploads") as batch:
        batch.alter_column("writer", type_=sa.String(255), existing_type=sa.String(36))


def downgrade() -> None:
    # Claims in progress would not fit: they are let go, as a restart lets them go.
    op.execute("UPDATE uploads SET writer = NULL, writing_since = NULL")
    with op.batch_alter_table("uploads") as batch:
        batch.alter_column("writer", type_=sa.String(36), existing_type=sa.String(255))
