"""audit trail

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03 09:05:00.000000

One insert-only table: who read or changed which record, when and from where. Two indexes lead
with clinic_id (newest first per clinic; one object's history), so clinic_id has no index of its own.

"""
from alembic import op
import sqlalchemy as sa

import wa_portal.models.base


# revision identifiers, used by Alembic.
revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('audit_event',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('clinic_id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=True),
    sa.Column('actor', sa.String(length=200), nullable=False),
    sa.Column('action', sa.String(length=32), nullable=False),
    sa.Column('object_type', sa.String(length=32), nullable=False),
    sa.Column('object_id', sa.String(length=64), nullable=True),
    sa.Column('summary', sa.String(length=300), nullable=False),
    sa.Column('ip', sa.String(length=64), nullable=True),
    sa.Column('created_at', wa_portal.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['clinic_id'], ['clinic.id'], name=op.f('fk_audit_event_clinic_id_clinic'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['app_user.id'], name=op.f('fk_audit_event_user_id_app_user'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_event'))
    )
    with op.batch_alter_table('audit_event', schema=None) as batch_op:
        batch_op.create_index('ix_audit_event_clinic_recent', ['clinic_id', 'id'], unique=False)
        batch_op.create_index('ix_audit_event_object', ['clinic_id', 'object_type', 'object_id'], unique=False)


def downgrade():
    with op.batch_alter_table('audit_event', schema=None) as batch_op:
        batch_op.drop_index('ix_audit_event_object')
        batch_op.drop_index('ix_audit_event_clinic_recent')

    op.drop_table('audit_event')
