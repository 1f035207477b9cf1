"""assistant faq

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04 09:00:00

The assistant's FAQ entries (faq_entry: question, trigger keywords, answer, enabled, position),
one set per clinic. The assistant's on/off switches live in clinic.settings ("assistant_enabled",
"assistant_booking"), which needs no column.

"""

import sqlalchemy as sa
from alembic import op

import wa_portal.models.base

# revision identifiers, used by Alembic.
revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "faq_entry",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("question", sa.String(length=200), nullable=False),
        sa.Column("keywords", sa.JSON(), nullable=False),
        sa.Column("answer", sa.Text(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("created_at", wa_portal.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", wa_portal.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("clinic_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["clinic_id"], ["clinic.id"], name=op.f("fk_faq_entry_clinic_id_clinic"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_faq_entry")),
    )
    op.create_index(op.f("ix_faq_entry_clinic_id"), "faq_entry", ["clinic_id"], unique=False)
    op.create_index(
        "ix_faq_entry_clinic_position", "faq_entry", ["clinic_id", "position", "id"], unique=False
    )


def downgrade():
    op.drop_index("ix_faq_entry_clinic_position", table_name="faq_entry")
    op.drop_index(op.f("ix_faq_entry_clinic_id"), table_name="faq_entry")
    op.drop_table("faq_entry")
