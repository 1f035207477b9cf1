"""A clinic's link to one provider account (a WhatsApp number, an SMS sender, an email sender)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from .base import Base, ClinicScoped, TimestampMixin


class ConnectionStatus(StrEnum):
    PENDING = "pending"
    CONNECTED = "connected"
    DEGRADED = "degraded"
    DISCONNECTED = "disconnected"


class Connection(ClinicScoped, TimestampMixin, Base):
    __tablename__ = "connection"

    id: Mapped[int] = mapped_column(primary_key=True)
    provider: Mapped[str] = mapped_column(String(32))
    label: Mapped[str] = mapped_column(String(120), default="")
    display_phone: Mapped[str | None] = mapped_column(String(32))
    status: Mapped[ConnectionStatus] = mapped_column(String(16), default=ConnectionStatus.CONNECTED)
    status_detail: Mapped[str] = mapped_column(String(500), default="")
    quality_rating: Mapped[str | None] = mapped_column(String(16))
    messaging_limit: Mapped[str | None] = mapped_column(String(32))
    health_checked_at: Mapped[datetime | None]
    # Non-secret settings in the clear; secret ones only inside the AES-GCM envelope below.
    config: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    credentials_encrypted: Mapped[str] = mapped_column(Text, default="")
    active: Mapped[bool] = mapped_column(default=True)

    routes: Mapped[list[ConnectionRoute]] = relationship(
        back_populates="connection", cascade="all, delete-orphan"
    )


class ConnectionRoute(Base):
    """A key a webhook is routed by (Meta phone_number_id, Twilio AccountSid:number, WAHA session …)."""

    __tablename__ = "connection_route"
    __table_args__ = (UniqueConstraint("provider", "route_key", "connection_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    connection_id: Mapped[int] = mapped_column(ForeignKey("connection.id", ondelete="CASCADE"), index=True)
    provider: Mapped[str] = mapped_column(String(32))
    route_key: Mapped[str] = mapped_column(String(200), index=True)

    connection: Mapped[Connection] = relationship(back_populates="routes")
