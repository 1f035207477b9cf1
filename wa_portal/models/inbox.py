"""Inbox state that is not a message: canned replies per clinic and per-user read state.

Internal notes and system lines ("Rita assigned this to Ana") are Messages (kind "note" /
"system", status "received"), so they sit in the thread in order; delivery only ever picks
up "queued" messages, so they can never leave the clinic. Typing presence lives in Redis only.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, Text, UniqueConstraint, func
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, ClinicScoped, TimestampMixin, utcnow
from .contact import Contact


class CannedReply(ClinicScoped, TimestampMixin, Base):
    __tablename__ = "canned_reply"

    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(80))
    body: Mapped[str] = mapped_column(Text)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("app_user.id", ondelete="SET NULL"))


class ConversationRead(ClinicScoped, Base):
    """How far one staff member has read one conversation (unread = inbound messages after it)."""

    __tablename__ = "conversation_read"
    __table_args__ = (UniqueConstraint("user_id", "conversation_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("app_user.id", ondelete="CASCADE"))
    conversation_id: Mapped[int] = mapped_column(
        ForeignKey("conversation.id", ondelete="CASCADE"), index=True
    )
    last_read_message_id: Mapped[int] = mapped_column(default=0)
    read_at: Mapped[datetime] = mapped_column(default=utcnow)


# Inbox search by name (issue 5): a trigram index so "%lucia%" does not scan every contact.
# Declared here rather than in contact.py, on the contact table; PostgreSQL only (SQLite uses LIKE).
Index(
    "ix_contact_name_trgm",
    func.lower(Contact.name).label("name_lower"),
    postgresql_using="gin",
    postgresql_ops={"name_lower": "gin_trgm_ops"},
).ddl_if(dialect="postgresql")
