"""uploads.owner: who opened an upload session, so that their open sessions are bounded

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 09:00:00

limits.upload_sessions caps the sessions one account (or, with auth off, one client
address) keeps open; sessions from before this revision have no owner and count for none.
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("uploads") as batch:
        batch.add_column(
            sa.Column("owner", sa.String(length=128), server_default="", nullable=False)
        )
        batch.create_index("ix_uploads_owner", ["owner"])


def downgrade() -> None:
    with op.batch_alter_table("uploads") as batch:
        batch.drop_index("ix_uploads_owner")
        batch.drop_column("owner")
