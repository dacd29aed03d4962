"""manifests.signed and repositories.signature_policy, for the manifest GET

Revision ID: 0026
Revises: 0025
Create Date: 2026-12-04 19:30:00

A manifest GET decides a namespace's signature policy from the two rows it reads anyway,
where a join of namespace_policies and two EXISTS over the verdicts made it 6-9 % slower
on PostgreSQL (benchmarks/README.md). `signed` is true when a trusted key signed the
manifest, or an index of the same repository that lists it (registry/metadata/trust.py
keeps it with the verdicts); a repository holds a copy of its namespace's policy
(metadata/policies.py and metadata/repositories.py keep it).
"""

import sqlalchemy as sa
from alembic import op

revision = "0026"
down_revision = "0025"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A plain ALTER, not a batch: recreating the table on SQLite would drop its triggers.
    op.add_column(
        "manifests",
        sa.Column("signed", sa.Boolean(), server_default=sa.false(), nullable=False),
    )
    op.add_column(
        "repositories",
        sa.Column("signature_policy", sa.String(8), server_default="off", nullable=False),
    )
    op.execute(
        "UPDATE repositories SET signature_policy = (SELECT p.signature_policy FROM "
        "namespace_policies p WHERE p.namespace = repositories.namespace) WHERE EXISTS "
        "(SELECT 1 FROM namespace_policies p WHERE p.namespace = repositories.namespace)"
    )
    op.execute(
        "UPDATE manifests SET signed = true WHERE EXISTS (SELECT 1 FROM signature_verdicts v "
        "WHERE v.manifest_id = manifests.id) OR EXISTS (SELECT 1 FROM manifest_references c "
        "JOIN manifests i ON i.id = c.manifest_id JOIN signature_verdicts v "
        "ON v.manifest_id = i.id WHERE c.digest = manifests.digest AND c.kind = 'manifest' "
        "AND i.repository_id = manifests.repository_id)"
    )


def downgrade() -> None:
    op.execute("ALTER TABLE manifests DROP COLUMN signed")
    op.execute("ALTER TABLE repositories DROP COLUMN signature_policy")
