"""mirror_upstreams: what each upstream last said of its rate limit

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-02 07:45:00

One row per upstream, by its prefix: the limit and what remains of it, as the upstream's
RateLimit-Limit and RateLimit-Remaining headers said last (Docker Hub sends them), and
until when the mirror leaves it alone after a 429. Written by whichever process heard it,
read by GET /api/v1/mirror and /metrics.
"""

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "mirror_upstreams",
        sa.Column("prefix", sa.String(length=255), nullable=False),
        sa.Column("ratelimit_limit", sa.BigInteger(), nullable=True),
        sa.Column("ratelimit_remaining", sa.BigInteger(), nullable=True),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("backoff_until", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("prefix", name=op.f("pk_mirror_upstreams")),
    )


def downgrade() -> None:
    op.drop_table("mirror_upstreams")
