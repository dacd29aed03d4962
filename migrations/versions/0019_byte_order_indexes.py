"""byte-order indexes: catalog and tag pages in lexical order on PostgreSQL

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-02 15:50:00

The spec orders repository names and tags by their bytes, so on PostgreSQL the catalog and
tag-page queries sort with COLLATE "C". The unique indexes use the database's collation
(en_US.UTF-8, C.UTF-8...), which cannot serve that order: a catalog page of a 100,000-
repository index was a sequential scan and a sort (86 pages/s; benchmarks/scale.py).
These indexes can. SQLite compares bytes already and needs neither.
"""

from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute('CREATE INDEX ix_repositories_name_bytes ON repositories (name COLLATE "C")')
    op.execute(
        'CREATE INDEX ix_tags_repository_id_name_bytes ON tags (repository_id, name COLLATE "C")'
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP INDEX ix_tags_repository_id_name_bytes")
    op.execute("DROP INDEX ix_repositories_name_bytes")
