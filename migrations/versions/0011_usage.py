"""Storage usage kept exact by triggers: repositories.bytes and namespace_usage

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01 14:00:00

- repositories.bytes: the sizes of the blobs the repository links (its layers, configs
  and manifests), each once.
- namespace_usage.bytes: the same over a namespace's repositories, each blob counted
  once however many of them link it: what a quota (namespace_policies.quota_bytes)
  limits.
Triggers on repository_blobs keep both, whichever code path or replica links or unlinks.
On PostgreSQL a link first takes its namespace's row, so that of two links of one blob in
one namespace at once, the second sees the first and does not count the blob twice.
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

_OTHERS = (
    "EXISTS (SELECT 1 FROM repository_blobs l JOIN repositories o ON o.id = l.repository_id "
    "WHERE l.digest = {row}.digest AND o.namespace = r.namespace "
    "AND l.repository_id <> {row}.repository_id)"
)
_SIZE = "(SELECT size FROM blobs WHERE digest = {row}.digest)"
_SQLITE = {
    "usage_on_link_insert": (
        "INSERT",
        f"UPDATE repositories SET bytes = bytes + {_SIZE.format(row='NEW')} "
        "WHERE id = NEW.repository_id; "
        f"INSERT INTO namespace_usage (namespace, bytes) SELECT r.namespace, "
        f"{_SIZE.format(row='NEW')} FROM repositories r WHERE r.id = NEW.repository_id "
        f"AND NOT {_OTHERS.format(row='NEW')} "
        "ON CONFLICT (namespace) DO UPDATE SET bytes = bytes + excluded.bytes;",
    ),
    "usage_on_link_delete": (
        "DELETE",
        f"UPDATE repositories SET bytes = bytes - {_SIZE.format(row='OLD')} "
        "WHERE id = OLD.repository_id; "
        f"UPDATE namespace_usage SET bytes = bytes - {_SIZE.format(row='OLD')} "
        "WHERE namespace = (SELECT r.namespace FROM repositories r "
        f"WHERE r.id = OLD.repository_id AND NOT {_OTHERS.format(row='OLD')});",
    ),
}

_POSTGRES_FUNCTION = """
CREATE FUNCTION track_usage() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    ns varchar;
    sz bigint;
    repo integer;
    blob varchar;
BEGIN
    IF TG_OP = 'INSERT' THEN
        repo := NEW.repository_id; blob := NEW.digest;
    ELSE
        repo := OLD.repository_id; blob := OLD.digest;
    END IF;
    SELECT namespace INTO ns FROM repositories WHERE id = repo;
    SELECT size INTO sz FROM blobs WHERE digest = blob;
    IF ns IS NULL OR sz IS NULL THEN
        RETURN NULL;
    END IF;
    IF TG_OP = 'DELETE' THEN
        sz := -sz;
    END IF;
    -- The namespace's row first: links in one namespace take turns here, so the check
    -- below sees what the others committed.
    INSERT INTO namespace_usage AS u (namespace, bytes) VALUES (ns, 0)
        ON CONFLICT (namespace) DO UPDATE SET bytes = u.bytes;
    UPDATE repositories SET bytes = bytes + sz WHERE id = repo;
    IF NOT EXISTS (
        SELECT 1 FROM repository_blobs l JOIN repositories o ON o.id = l.repository_id
        WHERE l.digest = blob AND o.namespace = ns AND l.repository_id <> repo
    ) THEN
        UPDATE namespace_usage SET bytes = bytes + sz WHERE namespace = ns;
    END IF;
    RETURN NULL;
END $$
"""


def _postgres() -> bool:
    return op.get_context().dialect.name == "postgresql"


def upgrade() -> None:
    op.add_column(
        "repositories", sa.Column("bytes", sa.BigInteger(), server_default="0", nullable=False)
    )
    op.create_table(
        "namespace_usage",
        sa.Column("namespace", sa.String(255), nullable=False),
        sa.Column("bytes", sa.BigInteger(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("namespace", name="pk_namespace_usage"),
    )
    if _postgres():
        op.execute(_POSTGRES_FUNCTION)
    for name, (event, body) in _SQLITE.items():
        if _postgres():
            op.execute(
                f"CREATE TRIGGER {name} AFTER {event} ON repository_blobs FOR EACH ROW "
                "EXECUTE FUNCTION track_usage()"
            )
        else:
            op.execute(
                f"CREATE TRIGGER {name} AFTER {event} ON repository_blobs FOR EACH ROW "
                f"BEGIN {body} END"
            )
    op.execute(
        "UPDATE repositories SET bytes = COALESCE((SELECT SUM(b.size) FROM repository_blobs l "
        "JOIN blobs b ON b.digest = l.digest WHERE l.repository_id = repositories.id), 0)"
    )
    op.execute(
        "INSERT INTO namespace_usage (namespace, bytes) "
        "SELECT ns, SUM(size) FROM (SELECT DISTINCT r.namespace AS ns, b.digest, b.size "
        "FROM repository_blobs l JOIN repositories r ON r.id = l.repository_id "
        "JOIN blobs b ON b.digest = l.digest) AS linked GROUP BY ns"
    )


def downgrade() -> None:
    for name in _SQLITE:
        op.execute(f"DROP TRIGGER {name}" + (" ON repository_blobs" if _postgres() else ""))
    if _postgres():
        op.execute("DROP FUNCTION track_usage()")
    op.drop_table("namespace_usage")
    op.execute("ALTER TABLE repositories DROP COLUMN bytes")
