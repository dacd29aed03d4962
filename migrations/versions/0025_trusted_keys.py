"""trusted keys and what they signed: signature policies' data

Revision ID: 0025
Revises: 0024
Create Date: 2026-12-04 17:40:00

A trusted key belongs to a namespace (its owners added it) or to the registry (an
admin's, namespace empty, for every namespace). A verdict says that a key signed a
manifest of a repository: written when a signature arrives, and when a key is added
(`scanned_at` stays empty until a worker has looked at what is stored); removed with its
key or its manifest. A namespace's `signature_policy` is off, audit or enforce.
"""

import sqlalchemy as sa
from alembic import op

revision = "0025"
down_revision = "0024"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "trusted_keys",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("namespace", sa.String(255), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("algorithm", sa.String(32), nullable=False),
        sa.Column("fingerprint", sa.String(80), nullable=False),
        sa.Column("pem", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(255), nullable=False),
        sa.Column("scanned_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("scan_lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_trusted_keys"),
        sa.UniqueConstraint("namespace", "name", name="uq_trusted_keys_namespace_name"),
        sa.UniqueConstraint(
            "namespace", "fingerprint", name="uq_trusted_keys_namespace_fingerprint"
        ),
    )
    op.create_table(
        "signature_verdicts",
        sa.Column("manifest_id", sa.Integer(), nullable=False),
        sa.Column("key_id", sa.Integer(), nullable=False),
        sa.Column("signature", sa.String(160), nullable=False),
        sa.Column("verified_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["manifest_id"],
            ["manifests.id"],
            name="fk_signature_verdicts_manifest_id_manifests",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["key_id"],
            ["trusted_keys.id"],
            name="fk_signature_verdicts_key_id_trusted_keys",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("manifest_id", "key_id", name="pk_signature_verdicts"),
    )
    op.create_index("ix_signature_verdicts_key_id", "signature_verdicts", ["key_id"])
    with op.batch_alter_table("namespace_policies") as batch:
        batch.add_column(
            sa.Column("signature_policy", sa.String(8), nullable=False, server_default="off")
        )


def downgrade() -> None:
    with op.batch_alter_table("namespace_policies") as batch:
        batch.drop_column("signature_policy")
    op.drop_index("ix_signature_verdicts_key_id", "signature_verdicts")
    op.drop_table("signature_verdicts")
    op.drop_table("trusted_keys")
