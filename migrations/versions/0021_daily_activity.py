"""daily_activity: pulls and stored bytes per UTC day and namespace, for the dashboard

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-04 11:00:00

The console's dashboard draws pulls per day and storage over time. Pulls are counted in
memory and flushed as totals per repository and manifest, with no history; stored bytes
are one running total per namespace. This keeps a row per day and namespace: the pull
flush adds to its pulls, the collection worker's usage fold sets its stored bytes.
"""

import sqlalchemy as sa
from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "daily_activity",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("namespace", sa.String(255), nullable=False),
        sa.Column("pulls", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("stored_bytes", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("day", "namespace"),
    )


def downgrade() -> None:
    op.drop_table("daily_activity")
