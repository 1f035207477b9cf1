"""Delivery history: a row per provider call (or skipped channel) of an outbound message; consent changes."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, ClinicScoped, utcnow


class AttemptOutcome(StrEnum):
    IN_FLIGHT = "in_flight"  # written before the provider call: a crash leaves it like this
    SENT = "sent"  # the provider accepted it (provider_message_id set)
    RETRY = "retry"  # retryable failure: the same channel is tried again later
    FAILED = "failed"  # this channel gave up (non-retryable error or retry budget spent)
    SKIPPED = "skipped"  # not tried: circuit open
    TIMEOUT = "timeout"  # critical message not delivered in time on this channel: fall back


class DeliveryAttempt(ClinicScoped, Base):
    __tablename__ = "delivery_attempt"
    __table_args__ = (
        Index("ix_delivery_attempt_message_id_id", "message_id", "id"),
        Index("ix_delivery_attempt_connection_finished", "connection_id", "finished_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    message_id: Mapped[int] = mapped_column(ForeignKey("message.id", ondelete="CASCADE"))
    round: Mapped[int] = mapped_column(default=0)  # 0, then +1 each time a person presses Retry
    channel: Mapped[str] = mapped_column(String(16))
    provider: Mapped[str] = mapped_column(String(32))
    connection_id: Mapped[int | None] = mapped_column(ForeignKey("connection.id", ondelete="SET NULL"))
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]
    outcome: Mapped[AttemptOutcome] = mapped_column(String(16), default=AttemptOutcome.IN_FLIGHT)
    error_code: Mapped[str | None] = mapped_column(String(40))
    error_detail: Mapped[str | None] = mapped_column(String(500))
    provider_message_id: Mapped[str | None] = mapped_column(String(200))
    retry_by_id: Mapped[int | None] = mapped_column(ForeignKey("app_user.id", ondelete="SET NULL"))


class ConsentEvent(ClinicScoped, Base):
    """An audit row per consent change (opt out, opt back in), with where it came from."""

    __tablename__ = "consent_event"

    id: Mapped[int] = mapped_column(primary_key=True)
    contact_id: Mapped[int] = mapped_column(ForeignKey("contact.id", ondelete="CASCADE"), index=True)
    old: Mapped[str] = mapped_column(String(16))
    new: Mapped[str] = mapped_column(String(16))
    source: Mapped[str] = mapped_column(String(64))  # "whatsapp keyword", "provider", "staff" …
    message_id: Mapped[int | None] = mapped_column(ForeignKey("message.id", ondelete="SET NULL"))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("app_user.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
