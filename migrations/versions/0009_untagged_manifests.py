"""manifests.untagged_at: since when no tag points at a manifest, kept by triggers

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01 12:00:00

The untagged-manifest policy (gc.untagged_hours) deletes manifests untagged for longer
than that: one indexed range of this column. Triggers on tags set it when the last tag
of a manifest is deleted or moved away, and clear it when a tag comes, whichever code
path or replica writes the tag; a manifest pushed by digest alone is stored with it set.
Manifests untagged at the upgrade count as untagged since they were pushed.
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_SQLITE_NOW = "strftime('%Y-%m-%d %H:%M:%S.000000', 'now')"
_SQLITE_UNTAG = (
    f"UPDATE manifests SET untagged_at = {_SQLITE_NOW} WHERE id = OLD.manifest_id "
    "AND NOT EXISTS (SELECT 1 FROM tags WHERE manifest_id = OLD.manifest_id);"
)
_SQLITE_TAG = (
    "UPDATE manifests SET untagged_at = NULL "
    "WHERE id = NEW.manifest_id AND untagged_at IS NOT NULL;"
)
_SQLITE_TRIGGERS = {
    "untagged_on_tag_insert": ("INSERT", _SQLITE_TAG),
    "untagged_on_tag_delete": ("DELETE", _SQLITE_UNTAG),
    "untagged_on_tag_update": ("UPDATE OF manifest_id", _SQLITE_UNTAG + " " + _SQLITE_TAG),
}

_POSTGRES_FUNCTION = """
CREATE FUNCTION track_untagged() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'INSERT' THEN
        UPDATE manifests SET untagged_at = now() WHERE id = OLD.manifest_id
        AND NOT EXISTS (SELECT 1 FROM tags WHERE manifest_id = OLD.manifest_id);
    END IF;
    IF TG_OP <> 'DELETE' THEN
        UPDATE manifests SET untagged_at = NULL
        WHERE id = NEW.manifest_id AND untagged_at IS NOT NULL;
    END IF;
    RETURN NULL;
END $$
"""


def _postgres() -> bool:
    return op.get_context().dialect.name == "postgresql"


def upgrade() -> None:
    # Plain ALTERs, not a batch: recreating the table on SQLite would drop its triggers.
    op.add_column("manifests", sa.Column("untagged_at", sa.DateTime(timezone=True)))
    op.create_index("ix_manifests_untagged_at", "manifests", ["untagged_at"])
    if _postgres():
        op.execute(_POSTGRES_FUNCTION)
    for name, (event, body) in _SQLITE_TRIGGERS.items():
        if _postgres():
            # An UPDATE that keeps the manifest (only updated_at) changes nothing.
            when = (
                " WHEN (OLD.manifest_id <> NEW.manifest_id)" if event.startswith("UPDATE") else ""
            )
            op.execute(
                f"CREATE TRIGGER {name} AFTER {event} ON tags FOR EACH ROW{when} "
                "EXECUTE FUNCTION track_untagged()"
            )
        else:
            when = " WHEN OLD.manifest_id <> NEW.manifest_id" if event.startswith("UPDATE") else ""
            op.execute(
                f"CREATE TRIGGER {name} AFTER {event} ON tags FOR EACH ROW{when} BEGIN {body} END"
            )
    op.execute(
        "UPDATE manifests SET untagged_at = created_at "
        "WHERE NOT EXISTS (SELECT 1 FROM tags t WHERE t.manifest_id = manifests.id)"
    )


def downgrade() -> None:
    for name in _SQLITE_TRIGGERS:
        op.execute(f"DROP TRIGGER {name}" + (" ON tags" if _postgres() else ""))
    if _postgres():
        op.execute("DROP FUNCTION track_untagged()")
    op.drop_index("ix_manifests_untagged_at", "manifests")
    op.execute("ALTER TABLE manifests DROP COLUMN untagged_at")
