"""A message the clinic sends to many patients at once: an emergency alert or an announcement."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from .base import Base, ClinicScoped, utcnow
from .clinic import User


class BroadcastKind(StrEnum):
    EMERGENCY = "emergency"  # critical; reaches opted-out patients when the clinic allows it
    ANNOUNCEMENT = "announcement"  # never reaches opted-out patients


class BroadcastStatus(StrEnum):
    QUEUED = "queued"  # rows committed, delivery not handed to the worker yet
    SENDING = "sending"
    DONE = "done"  # every message reached a final state (sent, delivered, read or failed)


class Broadcast(ClinicScoped, Base):
    """One broadcast; its messages carry ``Message.broadcast_id`` (one per recipient)."""

    __tablename__ = "broadcast"
    __table_args__ = (
        # A double submit carries the same form token: the second insert is refused.
        UniqueConstraint("clinic_id", "idempotency_key"),
        Index("ix_broadcast_clinic_created", "clinic_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("app_user.id", ondelete="SET NULL"))
    kind: Mapped[BroadcastKind] = mapped_column(String(16))
    # {"type": "appointments_on", "date": "2026-12-04", "therapist_id": 3?} | {"type": "all_opted_in"}
    # | {"type": "wrote_within", "days": 30}
    audience: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    body: Mapped[str] = mapped_column(Text)
    # What WhatsApp gets when a recipient's 24-hour window is closed (None: the clinic's generic one).
    template_name: Mapped[str | None] = mapped_column(String(120))
    template_language: Mapped[str | None] = mapped_column(String(16))
    recipients_count: Mapped[int] = mapped_column(default=0)
    status: Mapped[BroadcastStatus] = mapped_column(String(16), default=BroadcastStatus.QUEUED)
    idempotency_key: Mapped[str | None] = mapped_column(String(64))
    # What was decided at send time: channel plan, skipped contacts (opted out, no route),
    # appointments cancelled with it.
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]

    created_by: Mapped[User | None] = relationship()
