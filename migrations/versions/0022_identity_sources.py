"""identity sources: LDAP and OIDC users, their groups, group roles, personal access
tokens, robots whose grants are namespace patterns

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-04 13:10:00

Users gain where their identity comes from (local, ldap, oidc) and its id there (a DN,
or an issuer and subject), unique per source. The groups an external user was last seen
in, and the roles those groups hold, are looked up by the same query that reads a
member's role. Personal access tokens are a user's named, scoped, expiring secrets.
A robot made by an admin may act in every namespace matching a pattern.
"""

import sqlalchemy as sa
from alembic import op

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("source", sa.String(16), server_default="local", nullable=False))
        batch.add_column(sa.Column("external_id", sa.String(512), nullable=True))
        batch.add_column(sa.Column("external_refresh", sa.Text(), nullable=True))
        batch.create_unique_constraint("uq_users_source_external_id", ["source", "external_id"])
    op.create_table(
        "user_groups",
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("group_name", sa.String(512), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name="fk_user_groups_user_id_users", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("user_id", "group_name", name="pk_user_groups"),
    )
    op.create_table(
        "group_roles",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("group_name", sa.String(512), nullable=False),
        sa.Column("namespace", sa.String(255), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("origin", sa.String(16), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_group_roles"),
        sa.UniqueConstraint(
            "source", "group_name", "namespace", name="uq_group_roles_source_group_name_namespace"
        ),
    )
    op.create_index("ix_group_roles_namespace", "group_roles", ["namespace"])
    op.create_table(
        "personal_tokens",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("secret_digest", sa.String(64), nullable=False),
        sa.Column("scopes", sa.Text(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_used_from", sa.String(64), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name="fk_personal_tokens_user_id_users", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_personal_tokens"),
        sa.UniqueConstraint("user_id", "name", name="uq_personal_tokens_user_id_name"),
    )
    op.create_table(
        "robot_patterns",
        sa.Column("robot_id", sa.Integer(), nullable=False),
        sa.Column("pattern", sa.String(255), nullable=False),
        sa.Column("like", sa.String(512), nullable=False),
        sa.Column("actions", sa.String(64), nullable=False),
        sa.ForeignKeyConstraint(
            ["robot_id"],
            ["robots.id"],
            name="fk_robot_patterns_robot_id_robots",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("robot_id", "pattern", name="pk_robot_patterns"),
    )


def downgrade() -> None:
    op.drop_table("robot_patterns")
    op.drop_table("personal_tokens")
    op.drop_index("ix_group_roles_namespace", table_name="group_roles")
    op.drop_table("group_roles")
    op.drop_table("user_groups")
    with op.batch_alter_table("users") as batch:
        batch.drop_constraint("uq_users_source_external_id", type_="unique")
        batch.drop_column("external_refresh")
        batch.drop_column("external_id")
        batch.drop_column("source")
