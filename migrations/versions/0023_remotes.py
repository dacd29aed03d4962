"""remotes: other registries that replication copies to or from

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-04 15:00:00

A remote belongs to a namespace (its owners made it) or to the registry (an admin's,
namespace empty). Its password is sealed with the sealing key; the CA is kept as PEM.
"""

import sqlalchemy as sa
from alembic import op

revision = "0023"
down_revision = "0022"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "remotes",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("namespace", sa.String(255), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("url", sa.String(2048), nullable=False),
        sa.Column("username", sa.String(255), nullable=True),
        sa.Column("secret", sa.Text(), nullable=True),
        sa.Column("verify_tls", sa.Boolean(), nullable=False),
        sa.Column("ca_pem", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_remotes"),
        sa.UniqueConstraint("namespace", "name", name="uq_remotes_namespace_name"),
    )


def downgrade() -> None:
    op.drop_table("remotes")
