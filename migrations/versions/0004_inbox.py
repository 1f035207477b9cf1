"""inbox: canned replies, per-user read state, list indexes, full-text search on message bodies

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22 04:15:00

"""

import sqlalchemy as sa
from alembic import op

import wa_portal.models.base

# revision identifiers, used by Alembic.
revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

# PostgreSQL only: an expression GIN index for websearch_to_tsquery over message bodies (declared on
# the model with ddl_if(dialect="postgresql"); SQLite searches with LIKE instead).
FTS_INDEX = "ix_message_body_fts"
# PostgreSQL only: trigram index for "name contains …" searches (pg_trgm is a trusted extension).
TRGM_INDEX = "ix_contact_name_trgm"


def upgrade():
    op.create_table(
        "canned_reply",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("title", sa.String(length=80), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("created_by_id", sa.Integer(), nullable=True),
        sa.Column("clinic_id", sa.Integer(), nullable=False),
        sa.Column("created_at", wa_portal.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", wa_portal.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["clinic_id"], ["clinic.id"], name=op.f("fk_canned_reply_clinic_id_clinic"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["created_by_id"],
            ["app_user.id"],
            name=op.f("fk_canned_reply_created_by_id_app_user"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_canned_reply")),
    )
    with op.batch_alter_table("canned_reply", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_canned_reply_clinic_id"), ["clinic_id"], unique=False)

    op.create_table(
        "conversation_read",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("conversation_id", sa.Integer(), nullable=False),
        sa.Column("last_read_message_id", sa.Integer(), nullable=False),
        sa.Column("read_at", wa_portal.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("clinic_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["clinic_id"],
            ["clinic.id"],
            name=op.f("fk_conversation_read_clinic_id_clinic"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["conversation_id"],
            ["conversation.id"],
            name=op.f("fk_conversation_read_conversation_id_conversation"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["app_user.id"],
            name=op.f("fk_conversation_read_user_id_app_user"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_conversation_read")),
        sa.UniqueConstraint(
            "user_id", "conversation_id", name=op.f("uq_conversation_read_user_id_conversation_id")
        ),
    )
    with op.batch_alter_table("conversation_read", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_conversation_read_clinic_id"), ["clinic_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_conversation_read_conversation_id"), ["conversation_id"], unique=False
        )

    with op.batch_alter_table("conversation", schema=None) as batch_op:
        batch_op.create_index(
            "ix_conversation_clinic_status_last", ["clinic_id", "status", "last_message_at"], unique=False
        )
        batch_op.create_index(
            "ix_conversation_clinic_status_awaiting", ["clinic_id", "status", "awaiting_since"], unique=False
        )
        batch_op.create_index(
            "ix_conversation_clinic_assignee_last",
            ["clinic_id", "assignee_id", "last_message_at"],
            unique=False,
        )

    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"CREATE INDEX {FTS_INDEX} ON message USING gin (to_tsvector('simple', body))")
        op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        op.execute(f"CREATE INDEX {TRGM_INDEX} ON contact USING gin (lower(name) gin_trgm_ops)")


def downgrade():
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"DROP INDEX IF EXISTS {FTS_INDEX}")
        op.execute(f"DROP INDEX IF EXISTS {TRGM_INDEX}")
    with op.batch_alter_table("conversation", schema=None) as batch_op:
        batch_op.drop_index("ix_conversation_clinic_assignee_last")
        batch_op.drop_index("ix_conversation_clinic_status_awaiting")
        batch_op.drop_index("ix_conversation_clinic_status_last")
    with op.batch_alter_table("conversation_read", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_conversation_read_conversation_id"))
        batch_op.drop_index(batch_op.f("ix_conversation_read_clinic_id"))
    op.drop_table("conversation_read")
    with op.batch_alter_table("canned_reply", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_canned_reply_clinic_id"))
    op.drop_table("canned_reply")
