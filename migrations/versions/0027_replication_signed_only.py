"""replication_rules.signed_only: a rule that copies only signed images

Revision ID: 0027
Revises: 0026
Create Date: 2026-12-04 20:30:00

A rule with it copies an image only when a key that the namespace on this registry's
side trusts signed it (the source's for a push rule, the destination's for a pull
rule), as its cosign signatures at the source say.
"""

import sqlalchemy as sa
from alembic import op

revision = "0027"
down_revision = "0026"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A plain ALTER, not a batch: recreating the table on SQLite would drop it while its
    # runs reference it (a cascade, with the foreign_keys pragma on).
    op.add_column(
        "replication_rules",
        sa.Column("signed_only", sa.Boolean(), server_default=sa.false(), nullable=False),
    )


def downgrade() -> None:
    op.execute("ALTER TABLE replication_rules DROP COLUMN signed_only")
