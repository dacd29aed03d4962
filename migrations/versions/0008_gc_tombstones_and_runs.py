"""Garbage collection's tombstones and run history; one counters table for every feature

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 11:00:00

- blob_tombstones: a blob whose row garbage collection has removed and whose bytes it is
  deleting. The row goes and the tombstone comes in one transaction; the bytes go next,
  then the tombstone. A client storing the same digest meanwhile waits for the tombstone
  to go (registry/services/leases.py), so new bytes are never placed where old ones are
  being deleted. `token` is the collection pass's, so a pass only finishes its own.
- gc_runs: what each collection pass did, for `GET /api/v1/gc` and the log.
- mirror_counters becomes counters: totals over every replica, now of garbage collection
  too (names say whose).
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "blob_tombstones",
        sa.Column("digest", sa.String(160), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("token", sa.String(36), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("digest", name="pk_blob_tombstones"),
    )
    op.create_index("ix_blob_tombstones_token", "blob_tombstones", ["token"])
    op.create_index("ix_blob_tombstones_created_at", "blob_tombstones", ["created_at"])
    op.create_table(
        "gc_runs",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("seconds", sa.Float(), nullable=False),
        sa.Column("worker", sa.String(128), nullable=False),
        sa.Column("blobs_deleted", sa.Integer(), nullable=False),
        sa.Column("bytes_freed", sa.BigInteger(), nullable=False),
        sa.Column("manifests_deleted", sa.Integer(), nullable=False),
        sa.Column("uploads_ended", sa.Integer(), nullable=False),
        sa.Column("postponed", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_gc_runs"),
    )
    op.create_index("ix_gc_runs_started_at", "gc_runs", ["started_at"])
    op.rename_table("mirror_counters", "counters")


def downgrade() -> None:
    op.rename_table("counters", "mirror_counters")
    op.drop_index("ix_gc_runs_started_at", "gc_runs")
    op.drop_table("gc_runs")
    op.drop_index("ix_blob_tombstones_created_at", "blob_tombstones")
    op.drop_index("ix_blob_tombstones_token", "blob_tombstones")
    op.drop_table("blob_tombstones")
