"""registry_push_manifest(): a manifest push on PostgreSQL in one round trip

Revision ID: 0028
Revises: 0027
Create Date: 2026-12-04 22:40:00

The push was a dozen statements between BEGIN and COMMIT, each a round trip with the
transaction open (and its row locks held) while the worker was busy elsewhere. This
function runs the same statements in the order of the same row locks, in one call that
PostgreSQL commits on its own: services/manifests.py calls it (metadata/push.py), and
SQLite keeps its program of statements. tests/api/test_push_rules.py holds the rules
both must keep.

It refuses by raising, so that nothing it wrote stays: SQLSTATE RGM01 (a blob or child
manifest is not in the repository; DETAIL the first digest in byte order) and RGT01 (an
immutable tag would move; DETAIL the tag). When the namespace's immutable-tag rules are
not those the caller matched the tags against (`p_rules`, JSON as stored; NULL: no
check), it writes nothing and returns the rules as they are; NULL when it pushed.
"""

from alembic import op

revision = "0028"
down_revision = "0027"
branch_labels = None
depends_on = None

_SIGNATURE = (
    "registry_push_manifest(text, text, boolean, text, jsonb, text, text, text, bigint, "
    "text, text, text, bytea, timestamptz, timestamptz, boolean, text[], text[], text[], "
    "text[], timestamptz, text[], boolean[], text, jsonb, jsonb, text)"
)

_FUNCTION = """
CREATE FUNCTION registry_push_manifest(
    p_namespace text,
    p_repository text,
    p_pushed boolean,            -- a client's push (not the mirror's): makes its namespace
    p_owner text,                -- the user who owns a namespace this push makes
    p_namespace_event jsonb,     -- the events row of a namespace made
    p_digest text,
    p_media_type text,
    p_artifact_type text,
    p_size bigint,
    p_subject text,
    p_config_digest text,
    p_annotations text,
    p_content bytea,
    p_now timestamptz,
    p_untagged_at timestamptz,
    p_check boolean,             -- what it references must be in the repository
    p_blobs text[],              -- sorted, unique
    p_children text[],           -- sorted, unique
    p_references text[],
    p_kinds text[],
    p_lease_end timestamptz,
    p_tags text[],               -- unique
    p_immutable boolean[],       -- by tag: whether `p_rules` make it immutable
    p_rules text,
    p_events jsonb,              -- events rows: one push by tag (or one by digest)
    p_tag_events jsonb,          -- by tag: its move's events row, `p_previous` in its body
    p_previous text
) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    v_rules text;
    v_namespace_id bigint;
    v_repository bigint;
    v_manifest bigint;
    v_inserted boolean;
    v_digest text;
    v_previous text[] := '{}';
    v_held text[];
    v_missing text;
    v_target bigint;
    v_count integer := coalesce(array_length(p_tags, 1), 0);
BEGIN
    IF p_rules IS NOT NULL THEN
        SELECT immutable_tags INTO v_rules FROM namespace_policies
        WHERE namespace = p_namespace;
        IF coalesce(v_rules, '[]') IS DISTINCT FROM p_rules THEN
            RETURN coalesce(v_rules, '[]');
        END IF;
    END IF;

    -- The row locks in the order every push and deletion takes them: a namespace its
    -- first push makes, the manifest's row and those its tags point at now, the blobs
    -- (FOR SHARE, in digest order), the tags last (their trigger writes the repository's
    -- row, where pushes to the repository take turns until COMMIT).
    IF p_pushed THEN
        INSERT INTO namespaces (name, public, created_at)
        SELECT p_namespace, false, p_now
        WHERE NOT EXISTS (SELECT 1 FROM namespaces WHERE name = p_namespace)
        ON CONFLICT DO NOTHING RETURNING id INTO v_namespace_id;
        IF v_namespace_id IS NOT NULL THEN
            IF p_owner IS NOT NULL THEN
                INSERT INTO members (namespace_id, user_id, role)
                SELECT v_namespace_id, id, 'owner' FROM users WHERE name = p_owner;
            END IF;
            INSERT INTO events (uid, created_at, action, outcome, actor, actor_kind,
                                namespace, repository, address, body, dispatched)
            SELECT uid, created_at, action, outcome, actor, actor_kind, namespace,
                   repository, address, body, dispatched
            FROM jsonb_populate_record(NULL::events, p_namespace_event);
        END IF;
    END IF;

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

    -- The manifest's row: only read (FOR KEY SHARE) when it is tagged already, so that
    -- pushes of one manifest under many tags do not take turns on it.
    WITH tagged AS (
        SELECT id FROM manifests
        WHERE repository_id = v_repository AND digest = p_digest AND untagged_at IS NULL
        FOR KEY SHARE),
    put AS (
        INSERT INTO manifests (repository_id, digest, media_type, artifact_type, size,
                               subject, config_digest, annotations, content, created_at,
                               untagged_at)
        SELECT v_repository, p_digest, p_media_type, p_artifact_type, p_size, p_subject,
               p_config_digest, p_annotations, p_content, p_now, p_untagged_at
        WHERE NOT EXISTS (SELECT 1 FROM tagged)
        ON CONFLICT (repository_id, digest) DO UPDATE SET untagged_at = CASE
            WHEN manifests.untagged_at IS NULL THEN NULL ELSE excluded.untagged_at END
        RETURNING id, created_at = p_now AS inserted)
    SELECT s.id, s.inserted INTO v_manifest, v_inserted
    FROM (SELECT id, false AS inserted FROM tagged UNION ALL SELECT * FROM put) s;

    -- Where each tag points now, if elsewhere: that manifest's row, which the move's
    -- trigger writes.
    FOR i IN 1 .. v_count LOOP
        SELECT m.digest INTO v_digest FROM tags t JOIN manifests m ON m.id = t.manifest_id
        WHERE t.repository_id = v_repository AND t.name = p_tags[i]
          AND t.manifest_id != v_manifest
        FOR KEY SHARE OF m;
        v_previous[i] := v_digest;
    END LOOP;

    IF p_check THEN
        -- FOR SHARE: garbage collection cannot remove one of them before COMMIT.
        SELECT array_agg(digest) INTO v_held FROM (
            SELECT b.digest FROM blobs b JOIN repository_blobs l ON l.digest = b.digest
            WHERE l.repository_id = v_repository AND b.digest = ANY(p_blobs)
            ORDER BY b.digest FOR SHARE OF b) linked;
        SELECT min(d COLLATE "C") INTO v_missing FROM unnest(p_blobs) d
        WHERE NOT d = ANY(coalesce(v_held, '{}'));
        SELECT array_agg(digest) INTO v_held FROM (
            SELECT digest FROM manifests
            WHERE repository_id = v_repository AND digest = ANY(p_children)
            ORDER BY digest FOR SHARE) held;
        SELECT min(d COLLATE "C") INTO v_digest FROM unnest(p_children) d
        WHERE NOT d = ANY(coalesce(v_held, '{}'));
        IF v_digest IS NOT NULL AND (v_missing IS NULL OR v_digest < v_missing COLLATE "C")
        THEN
            v_missing := v_digest;
        END IF;
        IF v_missing IS NOT NULL THEN
            RAISE EXCEPTION 'manifest % references %, which is not in repository %',
                p_digest, v_missing, p_repository
                USING ERRCODE = 'RGM01', DETAIL = v_missing;
        END IF;
    END IF;

    -- Its own bytes: Leases.keep() left their row a whole lease; a row there is not
    -- renewed, so that pushes of one manifest do not take turns on it.
    INSERT INTO blobs (digest, size, created_at, leased_until, gc_after)
    VALUES (p_digest, p_size, p_now, p_lease_end, p_lease_end) ON CONFLICT (digest) DO NOTHING;
    INSERT INTO repository_blobs (repository_id, digest, created_at)
    VALUES (v_repository, p_digest, p_now) ON CONFLICT DO NOTHING;
    -- A manifest stored before has its references: they come with its content.
    IF v_inserted AND coalesce(array_length(p_references, 1), 0) > 0 THEN
        INSERT INTO manifest_references (manifest_id, digest, kind)
        SELECT v_manifest, d, k FROM unnest(p_references, p_kinds) AS r(d, k)
        ON CONFLICT DO NOTHING;
    END IF;

    -- A push event by tag (or one by digest), each followed by the tag's move if it
    -- pointed elsewhere.
    FOR i IN 0 .. jsonb_array_length(p_events) - 1 LOOP
        INSERT INTO events (uid, created_at, action, outcome, actor, actor_kind, namespace,
                            repository, address, body, dispatched)
        SELECT uid, created_at, action, outcome, actor, actor_kind, namespace, repository,
               address, body, dispatched
        FROM jsonb_populate_record(NULL::events, p_events -> i);
        IF v_previous[i + 1] IS NOT NULL THEN
            INSERT INTO events (uid, created_at, action, outcome, actor, actor_kind,
                                namespace, repository, address, body, dispatched)
            SELECT uid, created_at, action, outcome, actor, actor_kind, namespace,
                   repository, address, replace(body, p_previous, v_previous[i + 1]),
                   dispatched
            FROM jsonb_populate_record(NULL::events, p_tag_events -> i);
        END IF;
    END LOOP;

    -- The tags; an immutable one only if it points nowhere yet, or here.
    FOR i IN 1 .. v_count LOOP
        IF p_immutable[i] THEN
            INSERT INTO tags (repository_id, name, manifest_id, updated_at)
            VALUES (v_repository, p_tags[i], v_manifest, p_now) ON CONFLICT DO NOTHING;
            SELECT manifest_id INTO v_target FROM tags
            WHERE repository_id = v_repository AND name = p_tags[i];
            IF v_target != v_manifest THEN
                RAISE EXCEPTION 'tag % of repository % is immutable', p_tags[i], p_repository
                    USING ERRCODE = 'RGT01', DETAIL = p_tags[i];
            END IF;
        ELSE
            INSERT INTO tags (repository_id, name, manifest_id, updated_at)
            VALUES (v_repository, p_tags[i], v_manifest, p_now)
            ON CONFLICT (repository_id, name) DO UPDATE
            SET manifest_id = excluded.manifest_id, updated_at = excluded.updated_at;
        END IF;
    END LOOP;
    RETURN NULL;
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
