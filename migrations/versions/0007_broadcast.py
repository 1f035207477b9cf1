"""broadcasts

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03 09:00:00

Broadcasts (emergency alerts and announcements): the broadcast table, and message.broadcast_id
(nullable, indexed) so a broadcast's progress is one indexed GROUP BY on every backend.

"""

import sqlalchemy as sa
from alembic import op

import wa_portal.models.base

# revision identifiers, used by Alembic.
revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "broadcast",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("created_by_id", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("audience", sa.JSON(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("template_name", sa.String(length=120), nullable=True),
        sa.Column("template_language", sa.String(length=16), nullable=True),
        sa.Column("recipients_count", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("idempotency_key", sa.String(length=64), nullable=True),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("created_at", wa_portal.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("finished_at", wa_portal.models.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("clinic_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["clinic_id"], ["clinic.id"], name=op.f("fk_broadcast_clinic_id_clinic"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["created_by_id"],
            ["app_user.id"],
            name=op.f("fk_broadcast_created_by_id_app_user"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_broadcast")),
        sa.UniqueConstraint(
            "clinic_id", "idempotency_key", name=op.f("uq_broadcast_clinic_id_idempotency_key")
        ),
    )
    op.create_index(op.f("ix_broadcast_clinic_id"), "broadcast", ["clinic_id"], unique=False)
    op.create_index("ix_broadcast_clinic_created", "broadcast", ["clinic_id", "created_at"], unique=False)
    with op.batch_alter_table("message") as batch_op:
        batch_op.add_column(sa.Column("broadcast_id", sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f("ix_message_broadcast_id"), ["broadcast_id"], unique=False)
        batch_op.create_foreign_key(
            batch_op.f("fk_message_broadcast_id_broadcast"),
            "broadcast",
            ["broadcast_id"],
            ["id"],
            ondelete="SET NULL",
        )


def downgrade():
    with op.batch_alter_table("message") as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_message_broadcast_id_broadcast"), type_="foreignkey")
        batch_op.drop_index(batch_op.f("ix_message_broadcast_id"))
        batch_op.drop_column("broadcast_id")
    op.drop_index("ix_broadcast_clinic_created", table_name="broadcast")
    op.drop_index(op.f("ix_broadcast_clinic_id"), table_name="broadcast")
    op.drop_table("broadcast")
