"""registry_link_blob(): a pushed blob linked on PostgreSQL in one round trip

Revision ID: 0029
Revises: 0028
Create Date: 2026-12-05 02:10:00

A blob's upload ended in BEGIN, five statements and COMMIT, each a round trip with the
transaction open (and the blob's row locked) while the worker was busy elsewhere. This
function runs the same statements in the same order of row locks (the repository, made
with its namespace's signature policy; the blob's row, its lease renewed; a namespace
quota's row; the upload session's; the link, within the quota; the push's event when
the repository links the blob), in one call that PostgreSQL commits on its own:
metadata/blobs.py calls it, and SQLite keeps its program of statements.
tests/api/test_blob_link_rules.py holds the rules both must keep.

It returns whether the repository links the blob (false: the quota refused it; no event
is recorded).
"""

from alembic import op

revision = "0029"
down_revision = "0028"
branch_labels = None
depends_on = None

_SIGNATURE = "registry_link_blob(text, text, text, bigint, timestamptz, timestamptz, text, jsonb)"

_FUNCTION = """
CREATE FUNCTION registry_link_blob(
    p_namespace text,
    p_repository text,
    p_digest text,
    p_size bigint,
    p_now timestamptz,
    p_lease_end timestamptz,
    p_upload text,               -- the upload session it ends; NULL: none
    p_event jsonb                -- the push's events row
) RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    v_repository bigint;
    v_linked boolean;
BEGIN
    SELECT id INTO v_repository FROM repositories WHERE name = p_repository;
    IF v_repository IS NULL THEN
        -- As metadata/repositories.py's ADD: the namespace's signature policy, read
        -- through an upsert of its row.
        WITH p AS (
            INSERT INTO namespace_policies (namespace, immutable_tags, signature_policy,
                                            updated_at)
            SELECT p_namespace, '[]', 'off', p_now
            WHERE NOT EXISTS (SELECT 1 FROM repositories WHERE name = p_repository)
            ON CONFLICT (namespace) DO UPDATE SET updated_at = namespace_policies.updated_at
            RETURNING signature_policy)
        INSERT INTO repositories (name, namespace, created_at, signature_policy)
        SELECT p_repository, p_namespace, p_now, signature_policy FROM p
        ON CONFLICT DO NOTHING;
        SELECT id INTO v_repository FROM repositories WHERE name = p_repository;
    END IF;

    -- A new blob is leased and queued for garbage collection when its lease ends; one
    -- stored again has its lease renewed.
    INSERT INTO blobs (digest, size, created_at, leased_until, gc_after)
    VALUES (p_digest, p_size, p_now, p_lease_end, p_lease_end)
    ON CONFLICT (digest) DO UPDATE SET leased_until = excluded.leased_until;
    -- In a namespace with a quota, its policy row (after the blob's): its uploads take
    -- turns, so the check below sees every link before it.
    UPDATE namespace_policies SET quota_bytes = quota_bytes
    WHERE namespace = p_namespace AND quota_bytes IS NOT NULL;
    IF p_upload IS NOT NULL THEN
        DELETE FROM uploads WHERE id = p_upload;
    END IF;
    -- Unless it would take the namespace past its quota (a blob it holds already costs
    -- nothing): its usage is the folded total plus the deltas not folded yet.
    INSERT INTO repository_blobs (repository_id, digest, created_at)
    SELECT v_repository, p_digest, p_now
    WHERE (SELECT quota_bytes FROM namespace_policies WHERE namespace = p_namespace) IS NULL
       OR EXISTS (SELECT 1 FROM namespace_blobs
                  WHERE namespace = p_namespace AND digest = p_digest)
       OR coalesce((SELECT bytes FROM namespace_usage WHERE namespace = p_namespace), 0)
          + coalesce((SELECT sum(bytes) FROM usage_deltas WHERE namespace = p_namespace), 0)
          + p_size <= (SELECT quota_bytes FROM namespace_policies WHERE namespace = p_namespace)
    ON CONFLICT DO NOTHING;

    SELECT EXISTS (SELECT 1 FROM repository_blobs
                   WHERE repository_id = v_repository AND digest = p_digest) INTO v_linked;
    IF v_linked THEN
        INSERT INTO events (uid, created_at, action, outcome, actor, actor_kind, namespace,
                            repository, address, body, dispatched)
        SELECT uid, created_at, action, outcome, actor, actor_kind, namespace, repository,
               address, body, dispatched
        FROM jsonb_populate_record(NULL::events, p_event);
    END IF;
    RETURN v_linked;
END $$
"""


def _postgres() -> bool:
    return op.get_context().dialect.name == "postgresql"


def upgrade() -> None:
    if _postgres():
        op.execute(_FUNCTION)


def downgrade() -> None:
    if _postgres():
        op.execute(f"DROP FUNCTION {_SIGNATURE}")
