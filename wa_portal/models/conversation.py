"""A thread with one contact over one connection, and the messages in it."""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, String, Text, UniqueConstraint, func, literal_column, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from .base import Base, ClinicScoped, TimestampMixin
from .clinic import User
from .connection import Connection
from .contact import Contact

WINDOW = timedelta(hours=24)


class ConversationStatus(StrEnum):
    BOT = "bot"  # the assistant answers first
    AWAITING_HUMAN = "awaiting_human"
    ASSIGNED = "assigned"
    CLOSED = "closed"


class Conversation(ClinicScoped, TimestampMixin, Base):
    __tablename__ = "conversation"
    __table_args__ = (
        UniqueConstraint("connection_id", "contact_id"),
        Index("ix_conversation_clinic_last", "clinic_id", "last_message_at"),
        # The inbox views (issue 5): keyset pages per status, per assignee, oldest waiting first.
        Index("ix_conversation_clinic_status_last", "clinic_id", "status", "last_message_at"),
        Index("ix_conversation_clinic_status_awaiting", "clinic_id", "status", "awaiting_since"),
        Index("ix_conversation_clinic_assignee_last", "clinic_id", "assignee_id", "last_message_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    connection_id: Mapped[int] = mapped_column(ForeignKey("connection.id", ondelete="CASCADE"), index=True)
    contact_id: Mapped[int] = mapped_column(ForeignKey("contact.id", ondelete="CASCADE"), index=True)
    status: Mapped[ConversationStatus] = mapped_column(String(16), default=ConversationStatus.AWAITING_HUMAN)
    assignee_id: Mapped[int | None] = mapped_column(ForeignKey("app_user.id", ondelete="SET NULL"))
    last_inbound_at: Mapped[datetime | None]  # opens the 24-hour customer-service window
    # The channel the patient last wrote on; staff replies go out on it. Only WhatsApp has the
    # 24-hour window: a patient who texts by SMS can always be answered in free text.
    reply_channel: Mapped[str] = mapped_column(String(16), default="whatsapp", server_default="whatsapp")
    last_message_at: Mapped[datetime | None]
    last_message_preview: Mapped[str] = mapped_column(String(200), default="")
    awaiting_since: Mapped[datetime | None]
    unread_count: Mapped[int] = mapped_column(default=0)
    provider_thread_ref: Mapped[str | None] = mapped_column(String(100))  # Chatwoot conversation id

    connection: Mapped[Connection] = relationship()
    contact: Mapped[Contact] = relationship()
    assignee: Mapped[User | None] = relationship()

    def window_open(self, now: datetime) -> bool:
        return self.last_inbound_at is not None and now - self.last_inbound_at < WINDOW

    def free_text_open(self, now: datetime) -> bool:
        """Whether staff may write free text (and files): always on SMS, within the window on WhatsApp."""
        return self.reply_channel != "whatsapp" or self.window_open(now)

    def window_closes_at(self) -> datetime | None:
        return self.last_inbound_at + WINDOW if self.last_inbound_at else None


class Direction(StrEnum):
    IN = "in"
    OUT = "out"


class MessageStatus(StrEnum):
    RECEIVED = "received"
    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    DELIVERED = "delivered"
    READ = "read"
    FAILED = "failed"


# A status only moves forward; "failed" can follow any state except read (a late failure after
# read would be nonsense from the patient's point of view).
STATUS_RANK = {
    MessageStatus.QUEUED: 0,
    MessageStatus.SENDING: 1,
    MessageStatus.SENT: 2,
    MessageStatus.DELIVERED: 3,
    MessageStatus.READ: 4,
}


class AuthorType(StrEnum):
    PATIENT = "patient"
    STAFF = "staff"
    ASSISTANT = "assistant"
    SYSTEM = "system"


class Message(ClinicScoped, TimestampMixin, Base):
    __tablename__ = "message"
    __table_args__ = (
        UniqueConstraint("connection_id", "provider_message_id"),
        Index("ix_message_conversation_id_id", "conversation_id", "id"),
        Index("ix_message_status_updated", "status", "updated_at"),
        # The notification log (issue 4): keyset pages newest first, per filter, and date → id bounds.
        Index("ix_message_clinic_direction_id", "clinic_id", "direction", "id"),
        Index("ix_message_clinic_status_id", "clinic_id", "status", "id"),
        Index("ix_message_clinic_purpose_id", "clinic_id", "purpose", "id"),
        Index("ix_message_clinic_channel_id", "clinic_id", "channel", "id"),
        Index("ix_message_clinic_created", "clinic_id", "created_at"),
        # Inbox search (issue 5): full-text over bodies; PostgreSQL only (SQLite falls back to LIKE).
        Index(
            "ix_message_body_fts",
            func.to_tsvector(literal_column("'simple'"), text("body")),
            postgresql_using="gin",
        ).ddl_if(dialect="postgresql"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    conversation_id: Mapped[int] = mapped_column(ForeignKey("conversation.id", ondelete="CASCADE"))
    connection_id: Mapped[int] = mapped_column(ForeignKey("connection.id", ondelete="CASCADE"))
    direction: Mapped[Direction] = mapped_column(String(3))
    kind: Mapped[str] = mapped_column(String(20), default="text")
    body: Mapped[str] = mapped_column(Text, default="")
    author_type: Mapped[AuthorType] = mapped_column(String(16))
    author_id: Mapped[int | None] = mapped_column(ForeignKey("app_user.id", ondelete="SET NULL"))
    status: Mapped[MessageStatus] = mapped_column(String(16))
    provider_message_id: Mapped[str | None] = mapped_column(String(200))
    channel: Mapped[str] = mapped_column(String(16), default="whatsapp")
    # Why it was sent: reply, note, confirmation, reminder_7d, reminder_1d, reminder_2h, cancellation,
    # reschedule, broadcast, consent, assistant, test … (the notification log filters on it).
    purpose: Mapped[str] = mapped_column(String(32), default="reply", index=True)
    critical: Mapped[bool] = mapped_column(default=False)  # fallback when not delivered in time
    template_name: Mapped[str | None] = mapped_column(String(120))
    template_language: Mapped[str | None] = mapped_column(String(16))
    template_params: Mapped[list[str] | None] = mapped_column(JSON)
    error_code: Mapped[str | None] = mapped_column(String(40))
    error_detail: Mapped[str | None] = mapped_column(String(500))
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime | None]  # a scheduled retry: the sweeper leaves it alone until then
    # Delivery (issue 4): bumped when a person presses Retry, so every channel may be tried again.
    delivery_round: Mapped[int] = mapped_column(default=0, server_default="0")
    sent_at: Mapped[datetime | None]
    delivered_at: Mapped[datetime | None]
    read_at: Mapped[datetime | None]
    failed_at: Mapped[datetime | None]
    # Media: stored by the storage service under a clinic-prefixed key.
    media_key: Mapped[str | None] = mapped_column(String(300))
    media_mime: Mapped[str | None] = mapped_column(String(100))
    media_filename: Mapped[str | None] = mapped_column(String(255))
    media_size: Mapped[int | None]
    media_status: Mapped[str | None] = mapped_column(String(16))  # pending | stored | failed
    # Provider-specific leftovers worth keeping: button payloads, location, template variables.
    extra: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # Broadcasts: the broadcast this message is one recipient's copy of.
    broadcast_id: Mapped[int | None] = mapped_column(
        ForeignKey("broadcast.id", ondelete="SET NULL"), index=True
    )

    conversation: Mapped[Conversation] = relationship()
    author: Mapped[User | None] = relationship()
