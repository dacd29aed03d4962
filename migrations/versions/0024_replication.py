"""replication: rules, their runs and the items a run copies (a work queue)

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-04 16:30:00

A rule copies repositories that match its filters from here to a remote (push) or from
a remote to here (pull). A run is one pass of a rule, started by a person, a schedule
or events; its items (one tag, or one deletion) are claimed under a lease by any
process, and `replication_uploads` remembers where each blob's upload stands at the
remote so that an interrupted copy resumes there. At most one pending item per rule,
repository, reference and action: events for a tag that has not been copied yet
coalesce into the one item that will.
"""

import sqlalchemy as sa
from alembic import op

revision = "0024"
down_revision = "0023"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
PENDING = "state = 'pending'"


def upgrade() -> None:
    op.create_table(
        "replication_rules",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("namespace", sa.String(255), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("direction", sa.String(8), nullable=False),
        sa.Column("remote_id", sa.Integer(), nullable=False),
        sa.Column("repositories", sa.Text(), nullable=False),
        sa.Column("tags", sa.Text(), nullable=False),
        sa.Column("kinds", sa.Text(), nullable=False),
        sa.Column("destination", sa.String(255), nullable=False),
        sa.Column("strip", sa.Integer(), nullable=False),
        sa.Column("overwrite", sa.Boolean(), nullable=False),
        sa.Column("deletions", sa.Boolean(), nullable=False),
        sa.Column("trigger", sa.String(16), nullable=False),
        sa.Column("schedule", sa.String(120), nullable=True),
        sa.Column("next_run_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("bandwidth", sa.BigInteger(), nullable=False),
        sa.Column("blobs_at_once", sa.Integer(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(255), nullable=False),
        sa.ForeignKeyConstraint(
            ["remote_id"], ["remotes.id"], name="fk_replication_rules_remote_id_remotes"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_replication_rules"),
        sa.UniqueConstraint("namespace", "name", name="uq_replication_rules_namespace_name"),
    )
    op.create_table(
        "replication_runs",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("rule_id", sa.Integer(), nullable=False),
        sa.Column("trigger", sa.String(16), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(255), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("worker", sa.String(64), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["rule_id"],
            ["replication_rules.id"],
            name="fk_replication_runs_rule_id_replication_rules",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_replication_runs"),
    )
    op.create_index("ix_replication_runs_rule_id", "replication_runs", ["rule_id"])
    op.create_index("ix_replication_runs_state", "replication_runs", ["state"])
    op.create_table(
        "replication_items",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("run_id", ID, nullable=False),
        sa.Column("rule_id", sa.Integer(), nullable=False),
        sa.Column("action", sa.String(8), nullable=False),
        sa.Column("repository", sa.String(255), nullable=False),
        sa.Column("reference", sa.String(160), nullable=False),
        sa.Column("destination", sa.String(255), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("worker", sa.String(64), nullable=True),
        sa.Column("digest", sa.String(160), nullable=True),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("event_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["replication_runs.id"],
            name="fk_replication_items_run_id_replication_runs",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_replication_items"),
    )
    op.create_index("ix_replication_items_run_id", "replication_items", ["run_id", "state"])
    op.create_index("ix_replication_items_due", "replication_items", ["state", "next_attempt_at"])
    op.create_index(
        "ix_replication_items_pending",
        "replication_items",
        ["rule_id", "repository", "reference", "action"],
        unique=True,
        sqlite_where=sa.text(PENDING),
        postgresql_where=sa.text(PENDING),
    )
    op.create_table(
        "replication_uploads",
        sa.Column("item_id", ID, nullable=False),
        sa.Column("digest", sa.String(160), nullable=False),
        sa.Column("location", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["item_id"],
            ["replication_items.id"],
            name="fk_replication_uploads_item_id_replication_items",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("item_id", "digest", name="pk_replication_uploads"),
    )


def downgrade() -> None:
    op.drop_table("replication_uploads")
    op.drop_table("replication_items")
    op.drop_table("replication_runs")
    op.drop_table("replication_rules")
