"""tags_version: a repository's tag list changes get a new random version, by trigger

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28 00:50:00

Workers keep tag lists in memory and check them against this column on each request
(registry/services/tag_cache.py). Triggers, rather than application code, set it, so that
every write of a tag, whichever code path or replica makes it, is seen. The version is
random rather than a counter so that a repository deleted and created again under the same
id never meets its old version.
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

# Updates that only refresh updated_at (the mirror's revalidation) leave the list as it is.
_EVENTS = ("INSERT", "DELETE", "UPDATE OF repository_id, name")

_SQLITE_BUMP = "UPDATE repositories SET tags_version = random() WHERE id = {row}.repository_id;"

_POSTGRES_FUNCTION = """
CREATE FUNCTION bump_tags_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'INSERT' THEN
        UPDATE repositories SET tags_version = (random() * 9007199254740991)::bigint
        WHERE id = OLD.repository_id;
    END IF;
    IF TG_OP <> 'DELETE' THEN
        UPDATE repositories SET tags_version = (random() * 9007199254740991)::bigint
        WHERE id = NEW.repository_id;
    END IF;
    RETURN NULL;
END $$
"""


def _trigger_name(event: str) -> str:
    return "tags_version_on_" + event.split()[0].lower()


def _postgres() -> bool:
    return op.get_context().dialect.name == "postgresql"


def upgrade() -> None:
    op.add_column(
        "repositories",
        sa.Column("tags_version", sa.BigInteger(), server_default="0", nullable=False),
    )
    if _postgres():
        op.execute(_POSTGRES_FUNCTION)
    for event in _EVENTS:
        if _postgres():
            body = "EXECUTE FUNCTION bump_tags_version()"
        else:
            rows = {"INSERT": ["NEW"], "DELETE": ["OLD"]}.get(event, ["OLD", "NEW"])
            body = "BEGIN " + " ".join(_SQLITE_BUMP.format(row=row) for row in rows) + " END"
        op.execute(
            f"CREATE TRIGGER {_trigger_name(event)} AFTER {event} ON tags FOR EACH ROW {body}"
        )


def downgrade() -> None:
    on_table = " ON tags" if _postgres() else ""
    for event in _EVENTS:
        op.execute(f"DROP TRIGGER {_trigger_name(event)}{on_table}")
    if _postgres():
        op.execute("DROP FUNCTION bump_tags_version()")
    op.drop_column("repositories", "tags_version")
