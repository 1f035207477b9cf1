"""delivery attempts, consent events, message delivery round, contact channel preference, log indexes

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22 04:30:00

"""

import sqlalchemy as sa
from alembic import op

import wa_portal.models.base

# revision identifiers, used by Alembic.
revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "delivery_attempt",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("message_id", sa.Integer(), nullable=False),
        sa.Column("round", sa.Integer(), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("connection_id", sa.Integer(), nullable=True),
        sa.Column("started_at", wa_portal.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("finished_at", wa_portal.models.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("error_code", sa.String(length=40), nullable=True),
        sa.Column("error_detail", sa.String(length=500), nullable=True),
        sa.Column("provider_message_id", sa.String(length=200), nullable=True),
        sa.Column("retry_by_id", sa.Integer(), nullable=True),
        sa.Column("clinic_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["clinic_id"],
            ["clinic.id"],
            name=op.f("fk_delivery_attempt_clinic_id_clinic"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["connection_id"],
            ["connection.id"],
            name=op.f("fk_delivery_attempt_connection_id_connection"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["message_id"],
            ["message.id"],
            name=op.f("fk_delivery_attempt_message_id_message"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["retry_by_id"],
            ["app_user.id"],
            name=op.f("fk_delivery_attempt_retry_by_id_app_user"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_delivery_attempt")),
    )
    op.create_index(op.f("ix_delivery_attempt_clinic_id"), "delivery_attempt", ["clinic_id"], unique=False)
    op.create_index(
        "ix_delivery_attempt_message_id_id", "delivery_attempt", ["message_id", "id"], unique=False
    )
    op.create_index(
        "ix_delivery_attempt_connection_finished",
        "delivery_attempt",
        ["connection_id", "finished_at"],
        unique=False,
    )
    op.create_table(
        "consent_event",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("contact_id", sa.Integer(), nullable=False),
        sa.Column("old", sa.String(length=16), nullable=False),
        sa.Column("new", sa.String(length=16), nullable=False),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("message_id", sa.Integer(), nullable=True),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("created_at", wa_portal.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("clinic_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["clinic_id"], ["clinic.id"], name=op.f("fk_consent_event_clinic_id_clinic"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["contact_id"],
            ["contact.id"],
            name=op.f("fk_consent_event_contact_id_contact"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["message_id"],
            ["message.id"],
            name=op.f("fk_consent_event_message_id_message"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["app_user.id"], name=op.f("fk_consent_event_user_id_app_user"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_consent_event")),
    )
    op.create_index(op.f("ix_consent_event_clinic_id"), "consent_event", ["clinic_id"], unique=False)
    op.create_index(op.f("ix_consent_event_contact_id"), "consent_event", ["contact_id"], unique=False)
    with op.batch_alter_table("message") as batch_op:
        batch_op.add_column(sa.Column("delivery_round", sa.Integer(), server_default="0", nullable=False))
        batch_op.create_index(
            "ix_message_clinic_direction_id", ["clinic_id", "direction", "id"], unique=False
        )
        batch_op.create_index("ix_message_clinic_status_id", ["clinic_id", "status", "id"], unique=False)
        batch_op.create_index("ix_message_clinic_purpose_id", ["clinic_id", "purpose", "id"], unique=False)
        batch_op.create_index("ix_message_clinic_channel_id", ["clinic_id", "channel", "id"], unique=False)
        batch_op.create_index("ix_message_clinic_created", ["clinic_id", "created_at"], unique=False)
    with op.batch_alter_table("contact") as batch_op:
        batch_op.add_column(sa.Column("preferred_channels", sa.JSON(), nullable=True))


def downgrade():
    with op.batch_alter_table("contact") as batch_op:
        batch_op.drop_column("preferred_channels")
    with op.batch_alter_table("message") as batch_op:
        batch_op.drop_index("ix_message_clinic_created")
        batch_op.drop_index("ix_message_clinic_channel_id")
        batch_op.drop_index("ix_message_clinic_purpose_id")
        batch_op.drop_index("ix_message_clinic_status_id")
        batch_op.drop_index("ix_message_clinic_direction_id")
        batch_op.drop_column("delivery_round")
    op.drop_index(op.f("ix_consent_event_contact_id"), table_name="consent_event")
    op.drop_index(op.f("ix_consent_event_clinic_id"), table_name="consent_event")
    op.drop_table("consent_event")
    op.drop_index("ix_delivery_attempt_connection_finished", table_name="delivery_attempt")
    op.drop_index("ix_delivery_attempt_message_id_id", table_name="delivery_attempt")
    op.drop_index(op.f("ix_delivery_attempt_clinic_id"), table_name="delivery_attempt")
    op.drop_table("delivery_attempt")
