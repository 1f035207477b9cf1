"""Patients, therapist availability, appointments, their reminders, and API keys for other clinic systems."""

from __future__ import annotations

from datetime import datetime, time
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, String, Text, Time, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from .base import Base, ClinicScoped, TimestampMixin, utcnow
from .clinic import User
from .contact import Contact


class Patient(ClinicScoped, TimestampMixin, Base):
    """A contact the clinic treats: the contact carries the phone and consent, the patient the rest."""

    __tablename__ = "patient"

    id: Mapped[int] = mapped_column(primary_key=True)
    contact_id: Mapped[int] = mapped_column(ForeignKey("contact.id", ondelete="CASCADE"), unique=True)
    first_name: Mapped[str] = mapped_column(String(100), default="")
    last_name: Mapped[str] = mapped_column(String(100), default="")
    email: Mapped[str | None] = mapped_column(String(254))
    language: Mapped[str | None] = mapped_column(String(16))
    # In order of preference: whatsapp, sms, email.
    preferred_channels: Mapped[list[str]] = mapped_column(JSON, default=lambda: ["whatsapp"])

    contact: Mapped[Contact] = relationship()

    @property
    def full_name(self) -> str:
        return f"{self.first_name} {self.last_name}".strip() or self.contact.display_name


class AvailabilityKind(StrEnum):
    WEEKLY = "weekly"  # every week on ``weekday``, ``start_time``-``end_time`` clinic time
    ONE_OFF = "one_off"  # extra hours between ``starts_at`` and ``ends_at``
    BLOCKED = "blocked"  # no appointments between ``starts_at`` and ``ends_at`` (holidays, training)


class AvailabilitySlot(ClinicScoped, TimestampMixin, Base):
    __tablename__ = "availability_slot"
    __table_args__ = (Index("ix_availability_slot_therapist_kind", "therapist_id", "kind"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    therapist_id: Mapped[int] = mapped_column(ForeignKey("app_user.id", ondelete="CASCADE"))
    kind: Mapped[AvailabilityKind] = mapped_column(String(16))
    weekday: Mapped[int | None]  # 0 = Monday, as datetime.weekday()
    start_time: Mapped[time | None] = mapped_column(Time)  # clinic wall-clock time
    end_time: Mapped[time | None] = mapped_column(Time)
    starts_at: Mapped[datetime | None]
    ends_at: Mapped[datetime | None]
    note: Mapped[str] = mapped_column(String(200), default="")


class AppointmentStatus(StrEnum):
    BOOKED = "booked"
    CONFIRMED = "confirmed"
    CANCELLED = "cancelled"
    COMPLETED = "completed"
    NO_SHOW = "no_show"


# The statuses that hold a slot; the partial unique index below lists the same values.
ACTIVE_STATUSES = (AppointmentStatus.BOOKED, AppointmentStatus.CONFIRMED)
_ACTIVE_SQL = "status IN ('booked', 'confirmed')"


class AppointmentMode(StrEnum):
    IN_PERSON = "in_person"
    VIDEO = "video"


class Appointment(ClinicScoped, TimestampMixin, Base):
    __tablename__ = "appointment"
    __table_args__ = (
        # Two bookings of one therapist at the same start: the database lets exactly one in, even
        # when both requests passed the overlap check at the same moment.
        Index(
            "uq_appointment_therapist_start_active",
            "therapist_id",
            "starts_at",
            unique=True,
            postgresql_where=text(_ACTIVE_SQL),
            sqlite_where=text(_ACTIVE_SQL),
        ),
        Index("ix_appointment_clinic_starts", "clinic_id", "starts_at"),
        Index("ix_appointment_patient_starts", "patient_id", "starts_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patient.id", ondelete="CASCADE"))
    therapist_id: Mapped[int] = mapped_column(ForeignKey("app_user.id", ondelete="CASCADE"))
    starts_at: Mapped[datetime]
    ends_at: Mapped[datetime]
    status: Mapped[AppointmentStatus] = mapped_column(String(16), default=AppointmentStatus.BOOKED)
    mode: Mapped[AppointmentMode] = mapped_column(String(16), default=AppointmentMode.IN_PERSON)
    location: Mapped[str | None] = mapped_column(String(300))
    video_url: Mapped[str | None] = mapped_column(String(500))
    notes: Mapped[str] = mapped_column(Text, default="")  # staff only; never sent to the patient
    source: Mapped[str] = mapped_column(String(16), default="staff")  # staff | api | patient
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("app_user.id", ondelete="SET NULL"))
    confirmed_at: Mapped[datetime | None]
    cancelled_at: Mapped[datetime | None]

    patient: Mapped[Patient] = relationship()
    therapist: Mapped[User] = relationship(foreign_keys=[therapist_id])

    @property
    def active(self) -> bool:
        return self.status in ACTIVE_STATUSES

    @property
    def duration_minutes(self) -> int:
        return int((self.ends_at - self.starts_at).total_seconds() // 60)


class ReminderState(StrEnum):
    PENDING = "pending"
    SENT = "sent"
    SKIPPED = "skipped"  # checked at send time and no longer worth sending
    CANCELLED = "cancelled"  # replaced by a re-plan, or the appointment was cancelled


class Reminder(ClinicScoped, Base):
    """One planned reminder: the row is the truth, the RQ scheduled job only its trigger."""

    __tablename__ = "reminder"
    __table_args__ = (
        Index("ix_reminder_state_due", "state", "due_at"),
        Index("ix_reminder_appointment_id", "appointment_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    appointment_id: Mapped[int] = mapped_column(ForeignKey("appointment.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(32))  # reminder_7d, reminder_1d, reminder_2h …
    due_at: Mapped[datetime]
    # The appointment start this reminder was planned for: a moved appointment never gets it.
    planned_starts_at: Mapped[datetime]
    state: Mapped[ReminderState] = mapped_column(String(16), default=ReminderState.PENDING)
    message_id: Mapped[int | None] = mapped_column(ForeignKey("message.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None]


class ApiKey(ClinicScoped, Base):
    """A key another clinic system uses on /api/v1; only its sha256 is stored."""

    __tablename__ = "api_key"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), default="")
    prefix: Mapped[str] = mapped_column(String(16))  # shown in settings so people can tell keys apart
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None]
    revoked: Mapped[bool] = mapped_column(default=False)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("app_user.id", ondelete="SET NULL"))

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "prefix": self.prefix, "revoked": self.revoked}
