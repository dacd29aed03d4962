"""webhook_deliveries: a partial index of the failed ones

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-01 20:20:00

Every scrape of /metrics counts the pending and the failed deliveries; delivered ones are
kept for audit.retention_days and outnumber them by far, so each count reads an index of
its own state only.
"""

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_webhook_deliveries_failed",
        "webhook_deliveries",
        ["webhook_id"],
        sqlite_where=sa.text("state = 'failed'"),
        postgresql_where=sa.text("state = 'failed'"),
    )


def downgrade() -> None:
    op.drop_index("ix_webhook_deliveries_failed", table_name="webhook_deliveries")
