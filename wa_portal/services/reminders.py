"""Appointment notices and reminders: plan the rows, trigger them with RQ, check again at send time.

Reminder rows are the source of truth; an RQ scheduled job (``reminder-<id>``) is only the trigger,
and the sweeper sends any due pending reminder whose job Redis lost. At send time the reminder is
checked again (still pending, appointment still active, start unchanged, due), so no reminder ever
goes out for a cancelled or moved appointment, and running a send twice sends once.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from datetime import datetime, time, timedelta
from typing import Any, Protocol

from sqlalchemy import insert, select, update

from ..extensions import db
from ..models import (
    ACTIVE_STATUSES,
    Appointment,
    Clinic,
    Message,
    Patient,
    Reminder,
    ReminderState,
    utcnow,
)
from ..providers.base import Button, Capability, get_provider_class
from . import messaging
from .appointment_texts import (
    TEMPLATE_LANGUAGE_CODES,
    AppointmentContext,
    RenderedText,
    render,
    resolve_language,
    template_purpose,
)
from .reminder_plan import DEFAULT_OFFSETS, PlannedReminder, plan_reminders

log = logging.getLogger(__name__)

DEFAULT_QUIET = (time(21, 0), time(8, 0))
# A job that fires a little early (scheduler granularity, clock skew between hosts) still sends.
EARLY_TOLERANCE = timedelta(seconds=5)
REPLY_PURPOSE = "appointment_reply"


# --- clinic settings ---------------------------------------------------------------------------


def offsets_for(clinic: Clinic) -> tuple[str, ...]:
    value = clinic.setting("reminder_offsets", None)
    if not value:
        return DEFAULT_OFFSETS
    return tuple(str(v) for v in value)


def _parse_time(value: Any) -> time:
    if isinstance(value, time):
        return value
    hours, _, minutes = str(value).strip().partition(":")
    return time(int(hours), int(minutes or 0))


def quiet_hours_for(clinic: Clinic) -> tuple[time | None, time | None]:
    """``clinic.settings["quiet_hours"]``: ``{"start": "21:00", "end": "08:00"}``, or ``"off"``/``False``."""
    value = clinic.setting("quiet_hours", None)
    if value is None:
        return DEFAULT_QUIET
    if value in (False, "off", "", []):
        return None, None
    try:
        if isinstance(value, dict):
            return _parse_time(value["start"]), _parse_time(value["end"])
        start, end = value
        return _parse_time(start), _parse_time(end)
    except (KeyError, TypeError, ValueError):
        log.warning("clinic %s has unreadable quiet hours; using the defaults", clinic.id)
        return DEFAULT_QUIET


def planned_for(appt: Appointment, clinic: Clinic, now: datetime | None = None) -> list[PlannedReminder]:
    quiet_start, quiet_end = quiet_hours_for(clinic)
    return plan_reminders(
        starts_at=appt.starts_at,
        tz=clinic.timezone or "UTC",
        now=now or utcnow(),
        offsets=offsets_for(clinic),
        quiet_start=quiet_start,
        quiet_end=quiet_end,
    )


# --- planning ----------------------------------------------------------------------------------


def cancel_pending(appt: Appointment) -> None:
    """Retire the appointment's pending reminders (in the caller's transaction)."""
    db.session.execute(
        update(Reminder)
        .where(Reminder.appointment_id == appt.id, Reminder.state == ReminderState.PENDING)
        .values(state=ReminderState.CANCELLED)
    )


def plan(appt: Appointment, *, clinic: Clinic, now: datetime | None = None) -> list[Reminder]:
    """Replace the appointment's pending reminders with a fresh plan (in the caller's transaction)."""
    cancel_pending(appt)
    if appt.status not in ACTIVE_STATUSES:
        return []
    rows = [
        Reminder(
            clinic_id=appt.clinic_id,
            appointment_id=appt.id,
            kind=p.kind,
            due_at=p.due_at,
            planned_starts_at=appt.starts_at,
            state=ReminderState.PENDING,
        )
        for p in planned_for(appt, clinic, now)
    ]
    db.session.add_all(rows)
    db.session.flush()
    return rows


class _Planned(Protocol):
    id: int
    clinic_id: int
    starts_at: datetime


def plan_many(appointments: Sequence[_Planned], *, clinic: Clinic, now: datetime | None = None) -> int:
    """Bulk planning for new appointments (imports): one executemany INSERT; returns reminder rows planned.

    Takes anything with ``id``, ``clinic_id`` and ``starts_at`` (ORM rows or plain result rows). The
    caller commits, then arms jobs with ``schedule`` or leaves the trigger to the sweeper, which sends
    each reminder at most one sweep interval late.
    """
    now = now or utcnow()
    quiet_start, quiet_end = quiet_hours_for(clinic)
    offsets = offsets_for(clinic)
    tz = clinic.timezone or "UTC"
    values = [
        {
            "clinic_id": appt.clinic_id,
            "appointment_id": appt.id,
            "kind": p.kind,
            "due_at": p.due_at,
            "planned_starts_at": appt.starts_at,
            "state": ReminderState.PENDING.value,
            "created_at": now,
        }
        for appt in appointments
        for p in plan_reminders(
            starts_at=appt.starts_at,
            tz=tz,
            now=now,
            offsets=offsets,
            quiet_start=quiet_start,
            quiet_end=quiet_end,
        )
    ]
    if not values:
        return 0
    conn = db.session.connection()
    if conn.dialect.name == "postgresql":
        # COPY inside the session's transaction: several times faster than a batched INSERT for 100k rows.
        columns = list(values[0])
        raw: Any = conn.connection.driver_connection  # psycopg.Connection
        with raw.cursor() as cur, cur.copy(f"COPY reminder ({', '.join(columns)}) FROM STDIN") as copy:
            for row in values:
                copy.write_row([row[c] for c in columns])
    else:
        db.session.execute(insert(Reminder.__table__), values)  # type: ignore[arg-type]
    return len(values)


def schedule(rows: Iterable[Reminder]) -> bool:
    """Arm one RQ scheduled job per reminder, after the commit; False when Redis is down (sweeper sends)."""
    from ..jobs import DEFAULT, enqueue, tasks

    ok = True
    for row in rows:
        ok = (
            enqueue(tasks.send_reminder, row.id, queue=DEFAULT, job_id=f"reminder-{row.id}", at=row.due_at)
            and ok
        )
    return ok


# --- sending -----------------------------------------------------------------------------------


def _language(patient: Patient, clinic: Clinic) -> str:
    return resolve_language(patient.language or patient.contact.language or clinic.locale)


def _locale(clinic: Clinic) -> str:
    """The clinic's locale with its country when it names none: "en" in Spain formats like en_ES (24 h)."""
    locale = (clinic.locale or "en").strip()
    if "_" in locale or "-" in locale or not clinic.country:
        return locale
    return f"{locale}_{clinic.country.upper()}"


def context(appt: Appointment, clinic: Clinic, offered_slots: Sequence[datetime] = ()) -> AppointmentContext:
    return AppointmentContext(
        patient_first_name=appt.patient.first_name,
        clinic_name=clinic.name,
        therapist_name=appt.therapist.display_name,
        starts_at=appt.starts_at,
        tz=clinic.timezone or "UTC",
        locale=_locale(clinic),
        kind=appt.mode,  # type: ignore[arg-type]
        location=appt.location,
        video_url=appt.video_url,
        offered_slots=list(offered_slots),
    )


def _buttons_supported(clinic_id: int) -> bool:
    conn = messaging.default_connection(clinic_id)
    if conn is None:
        return False
    try:
        return Capability.BUTTONS in get_provider_class(conn.provider).capabilities
    except KeyError:
        return False


def rendered(
    appt: Appointment, kind: str, *, offered_slots: Sequence[datetime] = ()
) -> tuple[RenderedText, str]:
    clinic = db.session.get(Clinic, appt.clinic_id)
    assert clinic is not None
    lang = _language(appt.patient, clinic)
    text = render(
        kind,
        lang=lang,
        ctx=context(appt, clinic, offered_slots),
        buttons_supported=_buttons_supported(appt.clinic_id),
    )
    return text, lang


def _queue(appt: Appointment, kind: str, purpose: str, extra: dict[str, Any], **render_kw: Any) -> Message:
    text, lang = rendered(appt, kind, **render_kw)
    name = template_purpose(kind) if purpose != REPLY_PURPOSE else None
    return messaging.queue_notification(
        clinic_id=appt.clinic_id,
        contact_id=appt.patient.contact_id,
        purpose=purpose,
        body=text.text,
        template=messaging.TemplateUse(name, TEMPLATE_LANGUAGE_CODES[lang], text.template_params)
        if name
        else None,
        buttons=[Button(payload, title) for payload, title in text.buttons],
        critical=purpose in ("cancellation", "reschedule"),
        extra={"appointment_id": appt.id, "notice": kind, **extra},
    )


def notify(appt: Appointment, kind: str) -> Message | None:
    """Record a confirmation / reschedule / cancellation notice; never raises (the change is committed)."""
    try:
        return _queue(appt, kind, kind, {})
    except messaging.ComposeError as exc:  # e.g. no WhatsApp connection yet
        db.session.rollback()
        log.warning("appointment %s: %s notice not recorded: %s", appt.id, kind, exc)
        return None
    except Exception:  # a notice must not undo or fail the booking that was just committed
        db.session.rollback()
        log.exception("appointment %s: %s notice not recorded", appt.id, kind)
        return None


def answer(appt: Appointment, kind: str, *, offered_slots: Sequence[datetime] = ()) -> Message:
    """Answer a patient's reply inside the open window (confirmed_ack, cancelled_ack, reschedule_offer …)."""
    return _queue(appt, kind, REPLY_PURPOSE, {}, offered_slots=offered_slots)


def send_reminder(reminder_id: int, *, now: datetime | None = None) -> bool:
    """Send one reminder if it is still due and still true; idempotent. True when a message was queued."""
    row = db.session.scalar(select(Reminder).where(Reminder.id == reminder_id).with_for_update())
    if row is None or row.state != ReminderState.PENDING:
        db.session.rollback()
        return False
    now = now or utcnow()
    if row.due_at > now + EARLY_TOLERANCE:
        db.session.rollback()  # fired early: the sweeper (or a later job) sends it when due
        return False
    appt = db.session.get(Appointment, row.appointment_id)
    if (
        appt is None
        or appt.status not in ACTIVE_STATUSES
        or appt.starts_at != row.planned_starts_at
        or appt.starts_at <= now
    ):
        row.state = ReminderState.SKIPPED
        db.session.commit()
        log.info("reminder %s skipped: appointment changed", reminder_id)
        return False
    row.state = ReminderState.SENT
    row.sent_at = now
    try:
        # queue_notification commits the message together with the state change above.
        msg = _queue(appt, row.kind, row.kind, {"reminder_id": row.id})
    except messaging.ComposeError as exc:
        db.session.rollback()
        db.session.execute(
            update(Reminder).where(Reminder.id == reminder_id).values(state=ReminderState.SKIPPED)
        )
        db.session.commit()
        log.warning("reminder %s not sent: %s", reminder_id, exc)
        return False
    db.session.execute(update(Reminder).where(Reminder.id == reminder_id).values(message_id=msg.id))
    db.session.commit()
    return True


def due_ids(*, cutoff: datetime, limit: int = 1000) -> list[int]:
    """Pending reminders due at or before ``cutoff`` (served by the (state, due_at) index)."""
    return list(
        db.session.scalars(
            select(Reminder.id)
            .where(Reminder.state == ReminderState.PENDING, Reminder.due_at <= cutoff)
            .order_by(Reminder.due_at)
            .limit(limit)
        )
    )


def send_due(*, cutoff: datetime, limit: int = 1000) -> int:
    """The sweeper's pass: send every pending reminder due before ``cutoff`` whose job never ran."""
    sent = 0
    for rid in due_ids(cutoff=cutoff, limit=limit):
        try:
            sent += send_reminder(rid)
        except Exception:
            db.session.rollback()
            log.exception("reminder %s could not be sent by the sweeper", rid)
    return sent


def for_appointment(*, clinic_id: int, appointment_id: int) -> list[Reminder]:
    return list(
        db.session.scalars(
            select(Reminder)
            .where(Reminder.clinic_id == clinic_id, Reminder.appointment_id == appointment_id)
            .order_by(Reminder.due_at, Reminder.id)
        )
    )


def notifications(*, clinic_id: int, appointment_id: int) -> list[Message]:
    """Every message sent about an appointment (confirmation, reminders, notices, answers)."""
    return list(
        db.session.scalars(
            select(Message)
            .where(
                Message.clinic_id == clinic_id, Message.extra["appointment_id"].as_integer() == appointment_id
            )
            .order_by(Message.id)
        )
    )
