"""conversation reply channel

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03 18:00:00

conversation.reply_channel: the channel the patient last wrote on (whatsapp or sms), which staff
replies go out on and which decides whether the WhatsApp 24-hour window applies. Filled from
each conversation's latest inbound message.

"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("conversation") as batch_op:
        batch_op.add_column(
            sa.Column("reply_channel", sa.String(length=16), server_default="whatsapp", nullable=False)
        )
    op.execute(
        """
        UPDATE conversation SET reply_channel = (
            SELECT m.channel FROM message m
            WHERE m.conversation_id = conversation.id AND m.direction = 'in'
            ORDER BY m.id DESC LIMIT 1
        )
        WHERE EXISTS (
            SELECT 1 FROM message m WHERE m.conversation_id = conversation.id AND m.direction = 'in'
        )
        """
    )


def downgrade():
    with op.batch_alter_table("conversation") as batch_op:
        batch_op.drop_column("reply_channel")
