"""Appointments: patients, therapist availability, free slots, booking, rescheduling and cancelling.

Every change commits in one transaction together with its re-planned reminder rows; the patient
notices (confirmation, reschedule, cancellation) are recorded after that commit and never block it:
a booking stands even when no provider answers or the clinic has no connection yet.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import joinedload

from ..extensions import db
from ..models import (
    ACTIVE_STATUSES,
    Appointment,
    AppointmentMode,
    AppointmentStatus,
    AvailabilityKind,
    AvailabilitySlot,
    Clinic,
    Contact,
    Patient,
    Role,
    User,
    utcnow,
)
from . import reminders
from .appointment_texts import SUPPORTED_LANGUAGES
from .phones import InvalidPhone, normalize

log = logging.getLogger(__name__)

DEFAULT_SLOT_MINUTES = 50
MAX_DURATION_MINUTES = 8 * 60


class AppointmentError(ValueError):
    """A change that cannot be made as asked; ``fields`` names the inputs at fault."""

    code = "invalid"

    def __init__(self, message: str, fields: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fields = fields or {}


class SlotTaken(AppointmentError):
    code = "slot_taken"


class NotFound(LookupError):
    """No such row in this clinic (another clinic's rows do not exist for you)."""


@dataclass(frozen=True)
class PatientInput:
    name: str
    phone: str
    email: str | None = None
    language: str | None = None


@dataclass
class DayColumn:
    day: date
    free: list[datetime] = field(default_factory=list)
    appointments: list[Appointment] = field(default_factory=list)

    def entries(self) -> list[tuple[datetime, str, Appointment | None]]:
        """Free slots and appointments in time order, for the calendar grid."""
        items: list[tuple[datetime, str, Appointment | None]] = [(s, "free", None) for s in self.free]
        items += [(a.starts_at, "appointment", a) for a in self.appointments]
        return sorted(items, key=lambda item: item[0])


# --- lookups -----------------------------------------------------------------------------------


def clinic_of(clinic_id: int) -> Clinic:
    clinic = db.session.get(Clinic, clinic_id)
    if clinic is None:
        raise NotFound("clinic")
    return clinic


def zone(clinic: Clinic) -> ZoneInfo:
    return ZoneInfo(clinic.timezone or "UTC")


def slot_minutes(clinic: Clinic) -> int:
    try:
        value = int(clinic.setting("slot_minutes", DEFAULT_SLOT_MINUTES))
    except (TypeError, ValueError):
        return DEFAULT_SLOT_MINUTES
    return value if 5 <= value <= MAX_DURATION_MINUTES else DEFAULT_SLOT_MINUTES


def therapists(*, clinic_id: int) -> list[User]:
    return list(
        db.session.scalars(
            select(User)
            .where(User.clinic_id == clinic_id, User.role == Role.THERAPIST, User.active.is_(True))
            .order_by(User.name, User.id)
        )
    )


def get_therapist(*, clinic_id: int, therapist_id: int | None = None, email: str | None = None) -> User:
    query = select(User).where(User.clinic_id == clinic_id, User.role == Role.THERAPIST)
    if therapist_id is not None:
        query = query.where(User.id == therapist_id)
    elif email:
        query = query.where(User.email == email.strip().lower())
    else:
        raise NotFound("therapist")
    user = db.session.scalar(query)
    if user is None:
        raise NotFound("therapist")
    return user


def get(*, clinic_id: int, appointment_id: int) -> Appointment:
    appt = db.session.scalar(
        select(Appointment)
        .options(
            joinedload(Appointment.patient).joinedload(Patient.contact), joinedload(Appointment.therapist)
        )
        .where(Appointment.id == appointment_id, Appointment.clinic_id == clinic_id)
    )
    if appt is None:
        raise NotFound("appointment")
    return appt


def get_patient(*, clinic_id: int, patient_id: int) -> Patient:
    patient = db.session.scalar(
        select(Patient).where(Patient.id == patient_id, Patient.clinic_id == clinic_id)
    )
    if patient is None:
        raise NotFound("patient")
    return patient


def patient_for_contact(*, clinic_id: int, contact_id: int) -> Patient | None:
    return db.session.scalar(
        select(Patient).where(Patient.clinic_id == clinic_id, Patient.contact_id == contact_id)
    )


def list_appointments(
    *,
    clinic_id: int,
    therapist_id: int | None = None,
    status: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    patient_id: int | None = None,
    limit: int = 200,
) -> list[Appointment]:
    query = (
        select(Appointment)
        .options(
            joinedload(Appointment.patient).joinedload(Patient.contact), joinedload(Appointment.therapist)
        )
        .where(Appointment.clinic_id == clinic_id)
    )
    if therapist_id:
        query = query.where(Appointment.therapist_id == therapist_id)
    if status == "active":
        query = query.where(Appointment.status.in_(ACTIVE_STATUSES))
    elif status:
        query = query.where(Appointment.status == status)
    if start is not None:
        query = query.where(Appointment.starts_at >= start)
    if end is not None:
        query = query.where(Appointment.starts_at < end)
    if patient_id:
        query = query.where(Appointment.patient_id == patient_id)
    return list(db.session.scalars(query.order_by(Appointment.starts_at, Appointment.id).limit(limit)))


def upcoming_for_contact(*, clinic_id: int, contact_id: int, limit: int = 5) -> list[Appointment]:
    patient = patient_for_contact(clinic_id=clinic_id, contact_id=contact_id)
    if patient is None:
        return []
    return list_appointments(
        clinic_id=clinic_id, patient_id=patient.id, status="active", start=utcnow(), limit=limit
    )


def next_active_for_patient(
    *, clinic_id: int, patient_id: int, now: datetime | None = None
) -> Appointment | None:
    found = list_appointments(
        clinic_id=clinic_id, patient_id=patient_id, status="active", start=now or utcnow(), limit=1
    )
    return found[0] if found else None


# --- patients ----------------------------------------------------------------------------------


def _split_name(name: str) -> tuple[str, str]:
    parts = (name or "").strip().split(None, 1)
    return (parts[0] if parts else "", parts[1] if len(parts) > 1 else "")


def upsert_patient(*, clinic: Clinic, data: PatientInput) -> Patient:
    """The patient with this phone (E.164 in the clinic's country), linked to its contact; not committed."""
    fields: dict[str, str] = {}
    name = (data.name or "").strip()
    if not name:
        fields["patient.name"] = "Enter the patient's name."
    try:
        phone = normalize(data.phone or "", clinic.country)
    except InvalidPhone:
        phone = ""
        fields["patient.phone"] = "Enter a valid phone number, with the country code if it is abroad."
    language = (data.language or "").strip().lower()[:16] or None
    if language and language.split("-")[0].split("_")[0] not in SUPPORTED_LANGUAGES:
        fields["patient.language"] = f"Choose one of: {', '.join(SUPPORTED_LANGUAGES)}."
    if fields:
        raise AppointmentError("Some patient details need fixing.", fields)
    contact = db.session.scalar(select(Contact).where(Contact.clinic_id == clinic.id, Contact.phone == phone))
    if contact is None:
        contact = Contact(
            clinic_id=clinic.id, phone=phone, name=name, email=data.email or None, language=language
        )
        db.session.add(contact)
        db.session.flush()
    elif not contact.name:
        contact.name = name
    patient = patient_for_contact(clinic_id=clinic.id, contact_id=contact.id)
    first, last = _split_name(name)
    if patient is None:
        patient = Patient(
            clinic_id=clinic.id,
            contact_id=contact.id,
            first_name=first,
            last_name=last,
            email=data.email or contact.email,
            language=language or contact.language,
            preferred_channels=["whatsapp"],
        )
        db.session.add(patient)
        db.session.flush()
    else:
        if data.email:
            patient.email = data.email
        if language:
            patient.language = language
    return patient


# --- availability and free slots ---------------------------------------------------------------


def list_availability(*, clinic_id: int, therapist_id: int) -> list[AvailabilitySlot]:
    return list(
        db.session.scalars(
            select(AvailabilitySlot)
            .where(AvailabilitySlot.clinic_id == clinic_id, AvailabilitySlot.therapist_id == therapist_id)
            .order_by(
                AvailabilitySlot.kind,
                AvailabilitySlot.weekday,
                AvailabilitySlot.start_time,
                AvailabilitySlot.starts_at,
            )
        )
    )


def add_availability(
    *,
    clinic_id: int,
    therapist_id: int,
    kind: str,
    weekday: int | None = None,
    start_time: time | None = None,
    end_time: time | None = None,
    day: date | None = None,
    note: str = "",
) -> AvailabilitySlot:
    """Weekly hours (weekday + times), a one-off extra slot or blocked time (day + times, clinic time)."""
    clinic = clinic_of(clinic_id)
    get_therapist(clinic_id=clinic_id, therapist_id=therapist_id)
    fields: dict[str, str] = {}
    try:
        kind_value = AvailabilityKind(kind)
    except ValueError:
        raise AppointmentError(
            "Choose weekly hours, an extra slot or blocked time.", {"kind": "Unknown kind."}
        ) from None
    if start_time is None or end_time is None or start_time >= end_time:
        fields["end_time"] = "The end time must be after the start time."
    if kind_value == AvailabilityKind.WEEKLY and (weekday is None or not 0 <= weekday <= 6):
        fields["weekday"] = "Choose a day of the week."
    if kind_value != AvailabilityKind.WEEKLY and day is None:
        fields["day"] = "Choose a date."
    if fields:
        raise AppointmentError("Please fix the highlighted fields.", fields)
    assert start_time is not None
    assert end_time is not None
    slot = AvailabilitySlot(clinic_id=clinic_id, therapist_id=therapist_id, kind=kind_value, note=note[:200])
    if kind_value == AvailabilityKind.WEEKLY:
        slot.weekday, slot.start_time, slot.end_time = weekday, start_time, end_time
    else:
        assert day is not None
        tz = zone(clinic)
        slot.starts_at = _local(day, start_time, tz)
        slot.ends_at = _local(day, end_time, tz)
    db.session.add(slot)
    db.session.commit()
    return slot


def delete_availability(*, clinic_id: int, therapist_id: int, slot_id: int) -> None:
    slot = db.session.scalar(
        select(AvailabilitySlot).where(
            AvailabilitySlot.id == slot_id,
            AvailabilitySlot.clinic_id == clinic_id,
            AvailabilitySlot.therapist_id == therapist_id,
        )
    )
    if slot is None:
        raise NotFound("availability")
    db.session.delete(slot)
    db.session.commit()


def _local(day: date, wall: time, tz: ZoneInfo) -> datetime:
    # fold=0: a wall time skipped or repeated by a DST change resolves like reminder_plan does.
    return datetime.combine(day, wall, tzinfo=tz).replace(fold=0).astimezone(UTC)


def _overlaps(a_start: datetime, a_end: datetime, b_start: datetime, b_end: datetime) -> bool:
    return a_start < b_end and b_start < a_end


def free_slots(
    *,
    clinic_id: int,
    therapist_id: int,
    start_date: date,
    end_date: date,
    now: datetime | None = None,
    length_minutes: int | None = None,
    exclude_appointment_id: int | None = None,
    limit: int | None = None,
) -> list[datetime]:
    """Start times (UTC) of free slots from ``start_date`` to ``end_date`` inclusive, clinic-local days.

    Open hours are the weekly hours plus one-off slots, minus blocked time and active appointments;
    slots start at the beginning of each open stretch and are ``length_minutes`` long (the clinic's
    ``slot_minutes`` setting, 50 by default). Slots that have started are not free.
    """
    clinic = clinic_of(clinic_id)
    tz = zone(clinic)
    length = timedelta(minutes=length_minutes or slot_minutes(clinic))
    now = now or utcnow()
    rules = list_availability(clinic_id=clinic_id, therapist_id=therapist_id)
    range_start = _local(start_date, time(0), tz)
    range_end = _local(end_date + timedelta(days=1), time(0), tz)
    taken = [
        (a.starts_at, a.ends_at)
        for a in db.session.scalars(
            select(Appointment).where(
                Appointment.clinic_id == clinic_id,
                Appointment.therapist_id == therapist_id,
                Appointment.status.in_(ACTIVE_STATUSES),
                Appointment.ends_at > range_start,
                Appointment.starts_at < range_end,
            )
        )
        if a.id != exclude_appointment_id
    ]
    blocked = [
        (r.starts_at, r.ends_at)
        for r in rules
        if r.kind == AvailabilityKind.BLOCKED and r.starts_at and r.ends_at
    ]
    windows: list[tuple[datetime, datetime]] = []
    day = start_date
    while day <= end_date:
        for r in rules:
            if (
                r.kind == AvailabilityKind.WEEKLY
                and r.weekday == day.weekday()
                and r.start_time
                and r.end_time
            ):
                windows.append((_local(day, r.start_time, tz), _local(day, r.end_time, tz)))
        day += timedelta(days=1)
    windows += [
        (r.starts_at, r.ends_at)
        for r in rules
        if r.kind == AvailabilityKind.ONE_OFF
        and r.starts_at
        and r.ends_at
        and _overlaps(r.starts_at, r.ends_at, range_start, range_end)
    ]
    result: set[datetime] = set()
    for w_start, w_end in sorted(windows):
        slot = w_start
        while slot + length <= w_end:
            end = slot + length
            if (
                slot > now
                and range_start <= slot < range_end
                and not any(_overlaps(slot, end, b0, b1) for b0, b1 in blocked)
                and not any(_overlaps(slot, end, t0, t1) for t0, t1 in taken)
            ):
                result.add(slot)
            slot = end
    ordered = sorted(result)
    return ordered[:limit] if limit else ordered


def next_free_slots(
    *,
    clinic_id: int,
    therapist_id: int,
    count: int = 5,
    days: int = 21,
    exclude_appointment_id: int | None = None,
) -> list[datetime]:
    clinic = clinic_of(clinic_id)
    today = utcnow().astimezone(zone(clinic)).date()
    return free_slots(
        clinic_id=clinic_id,
        therapist_id=therapist_id,
        start_date=today,
        end_date=today + timedelta(days=days),
        exclude_appointment_id=exclude_appointment_id,
        limit=count,
    )


def week_calendar(*, clinic_id: int, therapist_id: int, first_day: date, days: int = 7) -> list[DayColumn]:
    """One column per clinic-local day: the therapist's free slots and appointments (all statuses)."""
    clinic = clinic_of(clinic_id)
    tz = zone(clinic)
    last_day = first_day + timedelta(days=days - 1)
    columns = {first_day + timedelta(days=i): DayColumn(first_day + timedelta(days=i)) for i in range(days)}
    for slot in free_slots(
        clinic_id=clinic_id, therapist_id=therapist_id, start_date=first_day, end_date=last_day
    ):
        columns[slot.astimezone(tz).date()].free.append(slot)
    for appt in list_appointments(
        clinic_id=clinic_id,
        therapist_id=therapist_id,
        start=_local(first_day, time(0), tz),
        end=_local(last_day + timedelta(days=1), time(0), tz),
    ):
        if appt.status == AppointmentStatus.CANCELLED:
            continue
        column = columns.get(appt.starts_at.astimezone(tz).date())
        if column is not None:
            column.appointments.append(appt)
    return list(columns.values())


# --- changes -----------------------------------------------------------------------------------


def _check_times(
    starts_at: datetime | None, duration_minutes: int | None, default: int
) -> tuple[datetime, datetime]:
    fields: dict[str, str] = {}
    if starts_at is None or starts_at.tzinfo is None:
        fields["starts_at"] = "Give the start as a date and time with its UTC offset."
    minutes = default if duration_minutes is None else duration_minutes
    if not isinstance(minutes, int) or not 5 <= minutes <= MAX_DURATION_MINUTES:
        fields["duration_minutes"] = f"The duration must be between 5 and {MAX_DURATION_MINUTES} minutes."
    if fields:
        raise AppointmentError("Please fix the highlighted fields.", fields)
    assert starts_at is not None
    start = starts_at.astimezone(UTC).replace(second=0, microsecond=0)
    if start <= utcnow():
        raise AppointmentError("That time has already passed.", {"starts_at": "Choose a time in the future."})
    return start, start + timedelta(minutes=minutes)


def _ensure_free(
    *, clinic_id: int, therapist_id: int, start: datetime, end: datetime, exclude_id: int | None = None
) -> None:
    clash = db.session.scalar(
        select(Appointment.id).where(
            Appointment.clinic_id == clinic_id,
            Appointment.therapist_id == therapist_id,
            Appointment.status.in_(ACTIVE_STATUSES),
            Appointment.starts_at < end,
            Appointment.ends_at > start,
            Appointment.id != (exclude_id or 0),
        )
    )
    if clash is not None:
        raise SlotTaken("This time is already booked for this therapist.", {"starts_at": "Already booked."})


def _commit_or_taken(*, flush_only: bool = False) -> None:
    try:
        if flush_only:
            db.session.flush()
        else:
            db.session.commit()
    except IntegrityError:
        # The partial unique index: someone booked the same start a moment before us.
        db.session.rollback()
        raise SlotTaken(
            "This time was booked by someone else a moment ago.", {"starts_at": "Already booked."}
        ) from None


def book(
    *,
    clinic_id: int,
    therapist_id: int,
    starts_at: datetime | None,
    duration_minutes: int | None = None,
    patient_id: int | None = None,
    patient: PatientInput | None = None,
    mode: str = AppointmentMode.IN_PERSON,
    location: str | None = None,
    video_url: str | None = None,
    notes: str = "",
    created_by_id: int | None = None,
    source: str = "staff",
) -> Appointment:
    """Book an appointment (free slot or any time), plan its reminders and send the confirmation."""
    clinic = clinic_of(clinic_id)
    try:
        therapist = get_therapist(clinic_id=clinic_id, therapist_id=therapist_id)
    except NotFound:
        raise AppointmentError(
            "Choose a therapist of this clinic.", {"therapist_id": "Unknown therapist."}
        ) from None
    try:
        mode_value = AppointmentMode(mode or AppointmentMode.IN_PERSON)
    except ValueError:
        raise AppointmentError("Choose in person or video.", {"mode": "Use in_person or video."}) from None
    if video_url and not video_url.startswith(("https://", "http://")):
        raise AppointmentError("The video link must start with https://.", {"video_url": "Not a link."})
    start, end = _check_times(starts_at, duration_minutes, slot_minutes(clinic))
    if patient_id is not None:
        try:
            person = get_patient(clinic_id=clinic_id, patient_id=patient_id)
        except NotFound:
            raise AppointmentError("Unknown patient.", {"patient_id": "No such patient."}) from None
    elif patient is not None:
        person = upsert_patient(clinic=clinic, data=patient)
    else:
        raise AppointmentError("Say who the appointment is for.", {"patient": "Give a patient."})
    try:
        _ensure_free(clinic_id=clinic_id, therapist_id=therapist.id, start=start, end=end)
    except SlotTaken:
        db.session.rollback()  # nor the patient or contact just written: nothing of a refused booking stays
        raise
    appt = Appointment(
        clinic_id=clinic_id,
        patient_id=person.id,
        therapist_id=therapist.id,
        starts_at=start,
        ends_at=end,
        status=AppointmentStatus.BOOKED,
        mode=mode_value,
        location=(location or "").strip()[:300] or None,
        video_url=(video_url or "").strip()[:500] or None,
        notes=notes or "",
        source=source,
        created_by_id=created_by_id,
    )
    db.session.add(appt)
    _commit_or_taken(flush_only=True)
    planned = reminders.plan(appt, clinic=clinic)
    _commit_or_taken()
    log.info("appointment %s booked (therapist %s)", appt.id, therapist.id)
    reminders.schedule(planned)
    reminders.notify(appt, "confirmation")
    return appt


def reschedule(
    *,
    clinic_id: int,
    appointment_id: int,
    starts_at: datetime | None,
    duration_minutes: int | None = None,
    notify: bool = True,
) -> Appointment:
    """Move an active appointment; reminders are re-planned and the patient told (unless ``notify=False``)."""
    appt = get(clinic_id=clinic_id, appointment_id=appointment_id)
    if not appt.active:
        raise AppointmentError(f"A {appt.status.replace('_', ' ')} appointment cannot be moved.")
    clinic = clinic_of(clinic_id)
    start, end = _check_times(starts_at, duration_minutes or appt.duration_minutes, slot_minutes(clinic))
    if start == appt.starts_at and end == appt.ends_at:
        return appt
    _ensure_free(
        clinic_id=clinic_id, therapist_id=appt.therapist_id, start=start, end=end, exclude_id=appt.id
    )
    appt.starts_at, appt.ends_at = start, end
    appt.status = AppointmentStatus.BOOKED  # the new time has not been confirmed yet
    appt.confirmed_at = None
    _commit_or_taken(flush_only=True)
    planned = reminders.plan(appt, clinic=clinic)
    _commit_or_taken()
    reminders.schedule(planned)
    if notify:
        reminders.notify(appt, "reschedule")
    return appt


def cancel(*, clinic_id: int, appointment_id: int, notify: bool = True) -> Appointment:
    """Cancel an appointment: the slot is free again, pending reminders are cancelled, the patient told."""
    appt = get(clinic_id=clinic_id, appointment_id=appointment_id)
    if appt.status == AppointmentStatus.CANCELLED:
        return appt
    if not appt.active:
        raise AppointmentError(f"A {appt.status.replace('_', ' ')} appointment cannot be cancelled.")
    appt.status = AppointmentStatus.CANCELLED
    appt.cancelled_at = utcnow()
    reminders.cancel_pending(appt)
    db.session.commit()
    log.info("appointment %s cancelled", appt.id)
    if notify and appt.starts_at > utcnow():
        reminders.notify(appt, "cancellation")
    return appt


def confirm(*, clinic_id: int, appointment_id: int) -> Appointment:
    appt = get(clinic_id=clinic_id, appointment_id=appointment_id)
    if appt.status == AppointmentStatus.BOOKED:
        appt.status = AppointmentStatus.CONFIRMED
        appt.confirmed_at = utcnow()
        db.session.commit()
    elif appt.status != AppointmentStatus.CONFIRMED:
        raise AppointmentError(f"A {appt.status.replace('_', ' ')} appointment cannot be confirmed.")
    return appt


def set_outcome(
    *, clinic_id: int, appointment_id: int, status: str, therapist_id: int | None = None
) -> Appointment:
    """Mark an appointment completed or no-show (a therapist only their own)."""
    appt = get(clinic_id=clinic_id, appointment_id=appointment_id)
    if therapist_id is not None and appt.therapist_id != therapist_id:
        raise NotFound("appointment")
    if status not in (AppointmentStatus.COMPLETED, AppointmentStatus.NO_SHOW):
        raise AppointmentError("Mark it completed or no-show.", {"status": "Use completed or no_show."})
    if appt.status == AppointmentStatus.CANCELLED:
        raise AppointmentError("A cancelled appointment cannot be completed.")
    if appt.starts_at > utcnow():
        raise AppointmentError("This appointment has not started yet.")
    appt.status = AppointmentStatus(status)
    reminders.cancel_pending(appt)
    db.session.commit()
    return appt


def statuses() -> Sequence[str]:
    return [s.value for s in AppointmentStatus]


def update_settings(
    *,
    clinic_id: int,
    offsets: Sequence[str],
    quiet_start: time | None,
    quiet_end: time | None,
    slot_length: int,
) -> Clinic:
    """Save the clinic's reminder offsets, quiet hours and slot length (validated like the planner does)."""
    from .reminder_plan import parse_offset

    fields: dict[str, str] = {}
    cleaned: list[str] = []
    for raw in offsets:
        try:
            cleaned.append(str(parse_offset(raw)))
        except (TypeError, ValueError) as exc:
            fields["offsets"] = str(exc)
    if (quiet_start is None) != (quiet_end is None) or (quiet_start is not None and quiet_start == quiet_end):
        fields["quiet_end"] = "Give both quiet-hour times (different from each other), or neither."
    if not 5 <= slot_length <= MAX_DURATION_MINUTES:
        fields["slot_minutes"] = f"Between 5 and {MAX_DURATION_MINUTES} minutes."
    if fields:
        raise AppointmentError("Please fix the highlighted fields.", fields)
    clinic = clinic_of(clinic_id)
    clinic.settings = {
        **(clinic.settings or {}),
        "reminder_offsets": list(dict.fromkeys(cleaned)),
        "quiet_hours": {"start": quiet_start.strftime("%H:%M"), "end": quiet_end.strftime("%H:%M")}
        if quiet_start and quiet_end
        else "off",
        "slot_minutes": slot_length,
    }
    db.session.commit()
    return clinic
