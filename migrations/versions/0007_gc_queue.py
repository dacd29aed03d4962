"""Garbage collection's queue and leases, in the blobs table

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 10:00:00

- blobs.leased_until: until when a blob is kept whether or not anything references it. An
  upload, a mount, or a push checking that the blob is there renews it, so that a client
  has that long to PUT the manifest that references it.
- blobs.gc_after: when garbage collection should look at the blob again (NULL: no need).
  Triggers set it the moment a reference to the blob, or the manifest stored as it, goes
  away, whichever code path or replica removes it; an upload sets it to the lease's end,
  so that a blob nobody ever referenced is looked at too. Finding garbage is then one
  indexed range of this column, however many blobs are live.
- manifests.digest is indexed: "is any manifest stored as this blob" is asked per blob.

Blobs that nothing references when this runs are queued, with a day's lease: pushes in
flight during an upgrade keep their layers.
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

# On SQLite, timestamps are text in SQLAlchemy's form (registry/metadata/hot.py).
_SQLITE_NOW = "strftime('%Y-%m-%d %H:%M:%S.000000', 'now')"
_SQLITE_DAY = "strftime('%Y-%m-%d %H:%M:%S.000000', 'now', '+1 day')"
_SQLITE_QUEUE = (
    f"UPDATE blobs SET gc_after = {_SQLITE_NOW} WHERE digest = OLD.digest AND gc_after IS NULL"
)
_TRIGGERS = {
    "gc_queue_on_reference_delete": "manifest_references",
    "gc_queue_on_manifest_delete": "manifests",
}

_POSTGRES_FUNCTION = """
CREATE FUNCTION gc_queue_blob() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE blobs SET gc_after = now() WHERE digest = OLD.digest AND gc_after IS NULL;
    RETURN NULL;
END $$
"""


def _postgres() -> bool:
    return op.get_context().dialect.name == "postgresql"


def upgrade() -> None:
    with op.batch_alter_table("blobs") as batch:
        batch.add_column(sa.Column("leased_until", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("gc_after", sa.DateTime(timezone=True), nullable=True))
        batch.create_index("ix_blobs_gc_after", ["gc_after"])
    op.create_index("ix_manifests_digest", "manifests", ["digest"])
    if _postgres():
        op.execute(_POSTGRES_FUNCTION)
    for name, table in _TRIGGERS.items():
        if _postgres():
            body = "FOR EACH ROW EXECUTE FUNCTION gc_queue_blob()"
        else:
            body = f"FOR EACH ROW BEGIN {_SQLITE_QUEUE}; END"
        op.execute(f"CREATE TRIGGER {name} AFTER DELETE ON {table} {body}")
    day = "now() + interval '1 day'" if _postgres() else _SQLITE_DAY
    op.execute(
        f"UPDATE blobs SET gc_after = {day}, leased_until = {day} "
        "WHERE NOT EXISTS (SELECT 1 FROM manifest_references r WHERE r.digest = blobs.digest) "
        "AND NOT EXISTS (SELECT 1 FROM manifests m WHERE m.digest = blobs.digest)"
    )


def downgrade() -> None:
    for name, table in _TRIGGERS.items():
        op.execute(f"DROP TRIGGER {name}" + (f" ON {table}" if _postgres() else ""))
    if _postgres():
        op.execute("DROP FUNCTION gc_queue_blob()")
    op.drop_index("ix_manifests_digest", "manifests")
    with op.batch_alter_table("blobs") as batch:
        batch.drop_index("ix_blobs_gc_after")
        batch.drop_column("gc_after")
        batch.drop_column("leased_until")
