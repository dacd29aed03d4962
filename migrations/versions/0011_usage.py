"""Storage usage kept exact by triggers: namespace_blobs, usage_deltas, namespace_usage

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01 14:00:00

A namespace's usage counts each blob once, however many of its repositories link it: what
a quota (namespace_policies.quota_bytes) limits.
- namespace_blobs: how many of a namespace's repositories link each blob. Triggers on
  repository_blobs keep it, whichever code path or replica links or unlinks; a blob's
  first link into a namespace, or its last going, adds its size (or takes it away) as a
  row of usage_deltas.
- usage_deltas is only ever inserted into, so concurrent pushes never wait on one another
  for the accounting; garbage collection folds it into namespace_usage. A namespace's
  usage is its namespace_usage row plus its deltas not folded yet.
The only rows the triggers write are the (namespace, blob) counts, taken after the blob's
own row, the order every transaction keeps.
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

_NS = "(SELECT namespace FROM repositories WHERE id = {row}.repository_id)"
_SIZE = "(SELECT size FROM blobs WHERE digest = {row}.digest)"
_COUNT = "(SELECT links FROM namespace_blobs WHERE namespace = {ns} AND digest = {row}.digest)"
_SQLITE = {
    "usage_on_link_insert": (
        "INSERT",
        "INSERT INTO usage_deltas (namespace, bytes) SELECT {ns}, {size} "
        "WHERE {ns} IS NOT NULL AND {count} IS NULL; "
        "INSERT INTO namespace_blobs (namespace, digest, links) SELECT {ns}, NEW.digest, 1 "
        "WHERE {ns} IS NOT NULL "
        "ON CONFLICT (namespace, digest) DO UPDATE SET links = links + 1;",
        "NEW",
    ),
    "usage_on_link_delete": (
        "DELETE",
        "UPDATE namespace_blobs SET links = links - 1 "
        "WHERE namespace = {ns} AND digest = OLD.digest; "
        "INSERT INTO usage_deltas (namespace, bytes) SELECT {ns}, -{size} WHERE {count} = 0; "
        "DELETE FROM namespace_blobs WHERE namespace = {ns} AND digest = OLD.digest "
        "AND links <= 0;",
        "OLD",
    ),
}

_POSTGRES_FUNCTION = """
CREATE FUNCTION track_usage() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    ns varchar;
    sz bigint;
    n integer;
BEGIN
    IF TG_OP = 'INSERT' THEN
        SELECT namespace INTO ns FROM repositories WHERE id = NEW.repository_id;
        SELECT size INTO sz FROM blobs WHERE digest = NEW.digest;
        IF ns IS NULL OR sz IS NULL THEN RETURN NULL; END IF;
        INSERT INTO namespace_blobs AS c (namespace, digest, links) VALUES (ns, NEW.digest, 1)
            ON CONFLICT (namespace, digest) DO UPDATE SET links = c.links + 1
            RETURNING links INTO n;
        IF n = 1 THEN
            INSERT INTO usage_deltas (namespace, bytes) VALUES (ns, sz);
        END IF;
    ELSE
        SELECT namespace INTO ns FROM repositories WHERE id = OLD.repository_id;
        SELECT size INTO sz FROM blobs WHERE digest = OLD.digest;
        IF ns IS NULL OR sz IS NULL THEN RETURN NULL; END IF;
        UPDATE namespace_blobs SET links = links - 1
            WHERE namespace = ns AND digest = OLD.digest RETURNING links INTO n;
        IF n = 0 THEN
            DELETE FROM namespace_blobs WHERE namespace = ns AND digest = OLD.digest;
            INSERT INTO usage_deltas (namespace, bytes) VALUES (ns, -sz);
        END IF;
    END IF;
    RETURN NULL;
END $$
"""


def _postgres() -> bool:
    return op.get_context().dialect.name == "postgresql"


def upgrade() -> None:
    op.create_table(
        "namespace_blobs",
        sa.Column("namespace", sa.String(255), nullable=False),
        sa.Column("digest", sa.String(160), nullable=False),
        sa.Column("links", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("namespace", "digest", name="pk_namespace_blobs"),
    )
    op.create_table(
        "usage_deltas",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("namespace", sa.String(255), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_usage_deltas"),
    )
    op.create_index("ix_usage_deltas_namespace", "usage_deltas", ["namespace"])
    op.create_table(
        "namespace_usage",
        sa.Column("namespace", sa.String(255), nullable=False),
        sa.Column("bytes", sa.BigInteger(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("namespace", name="pk_namespace_usage"),
    )
    if _postgres():
        op.execute(_POSTGRES_FUNCTION)
    for name, (event, body, row) in _SQLITE.items():
        if _postgres():
            op.execute(
                f"CREATE TRIGGER {name} AFTER {event} ON repository_blobs FOR EACH ROW "
                "EXECUTE FUNCTION track_usage()"
            )
        else:
            ns = _NS.format(row=row)
            sql = body.format(
                ns=ns, size=_SIZE.format(row=row), count=_COUNT.format(ns=ns, row=row)
            )
            op.execute(
                f"CREATE TRIGGER {name} AFTER {event} ON repository_blobs FOR EACH ROW "
                f"BEGIN {sql} END"
            )
    op.execute(
        "INSERT INTO namespace_blobs (namespace, digest, links) "
        "SELECT r.namespace, l.digest, count(*) FROM repository_blobs l "
        "JOIN repositories r ON r.id = l.repository_id GROUP BY r.namespace, l.digest"
    )
    op.execute(
        "INSERT INTO namespace_usage (namespace, bytes) SELECT c.namespace, SUM(b.size) "
        "FROM namespace_blobs c JOIN blobs b ON b.digest = c.digest GROUP BY c.namespace"
    )


def downgrade() -> None:
    for name in _SQLITE:
        op.execute(f"DROP TRIGGER {name}" + (" ON repository_blobs" if _postgres() else ""))
    if _postgres():
        op.execute("DROP FUNCTION track_usage()")
    op.drop_table("namespace_usage")
    op.drop_index("ix_usage_deltas_namespace", "usage_deltas")
    op.drop_table("usage_deltas")
    op.drop_table("namespace_blobs")
