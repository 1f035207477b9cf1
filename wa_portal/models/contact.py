"""A person the clinic talks to, identified by an E.164 phone number."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import JSON, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, ClinicScoped, TimestampMixin


class Consent(StrEnum):
    UNKNOWN = "unknown"
    OPTED_IN = "opted_in"
    OPTED_OUT = "opted_out"


class Contact(ClinicScoped, TimestampMixin, Base):
    __tablename__ = "contact"
    __table_args__ = (UniqueConstraint("clinic_id", "phone"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    phone: Mapped[str] = mapped_column(String(20))  # E.164
    name: Mapped[str] = mapped_column(String(200), default="")
    email: Mapped[str | None] = mapped_column(String(254))
    language: Mapped[str | None] = mapped_column(String(16))
    consent: Mapped[Consent] = mapped_column(String(16), default=Consent.UNKNOWN)
    consent_at: Mapped[datetime | None]
    consent_source: Mapped[str | None] = mapped_column(String(64))
    # Channel order for this patient (e.g. ["sms", "email"]); None = the clinic's fallback chain.
    preferred_channels: Mapped[list[str] | None] = mapped_column(JSON)
    notes: Mapped[str] = mapped_column(Text, default="")

    @property
    def display_name(self) -> str:
        return self.name or self.masked_phone

    @property
    def masked_phone(self) -> str:
        from ..services.phones import mask

        return mask(self.phone)
