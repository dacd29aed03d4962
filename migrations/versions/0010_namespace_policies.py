"""namespace_policies: a namespace's immutable-tag rules, retention policy and quota

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01 13:00:00

Keyed by the namespace's name (a repository name's first component), not by the accounts'
namespaces table: the storage lifecycle applies with authentication off too.
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "namespace_policies",
        sa.Column("namespace", sa.String(255), nullable=False),
        sa.Column("immutable_tags", sa.Text(), server_default="[]", nullable=False),
        sa.Column("retention", sa.Text(), nullable=True),
        sa.Column("quota_bytes", sa.BigInteger(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("namespace", name="pk_namespace_policies"),
    )


def downgrade() -> None:
    op.drop_table("namespace_policies")
