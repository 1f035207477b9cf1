"""Appointment pages: staff calendar, list and booking; therapists' own week, availability and outcomes."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from flask import Blueprint, Response, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user
from wtforms import SelectChoice

from ..models import Role
from ..services import api_keys, appointments, reminders
from ..services.appointments import AppointmentError, NotFound
from .decorators import render_page_or_fragment, roles_required, wants_fragment
from .forms import (
    WEEKDAYS,
    ActionForm,
    ApiKeyForm,
    AvailabilityForm,
    BookingForm,
    ReminderSettingsForm,
    RescheduleForm,
)

bp = Blueprint("appointments", __name__)

STAFF = (Role.ADMIN, Role.STAFF)
EVERYONE = (Role.ADMIN, Role.STAFF, Role.THERAPIST)


@bp.app_context_processor
def _sidebar_helpers() -> dict[str, Any]:
    """For the inbox's patient sidebar partial: the contact's upcoming appointments (read-only)."""

    def upcoming_appointments(contact: Any) -> list:
        if contact is None or not current_user.is_authenticated:
            return []
        return appointments.upcoming_for_contact(clinic_id=current_user.clinic_id, contact_id=contact.id)

    return {"upcoming_appointments": upcoming_appointments}


def _clinic():
    return current_user.clinic


def _today() -> date:
    return datetime.now(UTC).astimezone(appointments.zone(_clinic())).date()


def _parse_day(raw: str | None, default: date) -> date:
    try:
        return date.fromisoformat(raw) if raw else default
    except ValueError:
        return default


def _get(appointment_id: int):
    try:
        appt = appointments.get(clinic_id=current_user.clinic_id, appointment_id=appointment_id)
    except NotFound:
        abort(404)
    if current_user.role == Role.THERAPIST and appt.therapist_id != current_user.id:
        abort(404)
    return appt


# --- calendar and list (staff) -----------------------------------------------------------------


def _calendar_ctx(therapist_id: int | None, for_me: bool) -> dict[str, Any]:
    view = "day" if request.args.get("view") == "day" else "week"
    today = _today()
    day = _parse_day(request.args.get("day"), today)
    first = day if view == "day" else day - timedelta(days=day.weekday())
    days = 1 if view == "day" else 7
    therapists = appointments.therapists(clinic_id=current_user.clinic_id)
    if therapist_id is None and therapists:
        therapist_id = therapists[0].id
    columns = (
        appointments.week_calendar(
            clinic_id=current_user.clinic_id, therapist_id=therapist_id, first_day=first, days=days
        )
        if therapist_id
        else []
    )
    step = timedelta(days=days)
    return {
        "view": view,
        "first": first,
        "prev_day": first - step,
        "next_day": first + step,
        "today": today,
        "columns": columns,
        "therapists": therapists,
        "therapist_id": therapist_id,
        "for_me": for_me,
        "tz": _clinic().timezone,
        "endpoint": "appointments.my_week" if for_me else "appointments.calendar",
    }


@bp.get("/appointments/calendar")
@roles_required(*STAFF)
def calendar():
    ctx = _calendar_ctx(request.args.get("therapist", type=int), for_me=False)
    if ctx["therapist_id"] and ctx["therapist_id"] not in {t.id for t in ctx["therapists"]}:
        abort(404)
    return render_page_or_fragment("appointments/calendar.html", "appointments/_calendar.html", **ctx)


@bp.get("/appointments")
@roles_required(*STAFF)
def index():
    tz = appointments.zone(_clinic())
    start_day = _parse_day(request.args.get("from"), _today())
    end_day = _parse_day(request.args.get("to"), start_day + timedelta(days=30))
    status = request.args.get("status") or "active"
    therapist_id = request.args.get("therapist", type=int)
    rows = appointments.list_appointments(
        clinic_id=current_user.clinic_id,
        therapist_id=therapist_id,
        status=status if status != "all" else None,
        start=datetime.combine(start_day, datetime.min.time(), tzinfo=tz),
        end=datetime.combine(end_day + timedelta(days=1), datetime.min.time(), tzinfo=tz),
    )
    return render_page_or_fragment(
        "appointments/index.html",
        "appointments/_table.html",
        rows=rows,
        therapists=appointments.therapists(clinic_id=current_user.clinic_id),
        filters={"from": start_day, "to": end_day, "status": status, "therapist": therapist_id},
        statuses=appointments.statuses(),
        tz=_clinic().timezone,
    )


# --- booking -----------------------------------------------------------------------------------


def _booking_form() -> BookingForm:
    form = BookingForm()
    form.therapist_id.choices = [
        SelectChoice(str(t.id), t.display_name)
        for t in appointments.therapists(clinic_id=current_user.clinic_id)
    ]
    return form


@bp.get("/appointments/new")
@roles_required(*STAFF)
def new():
    form = _booking_form()
    tz = appointments.zone(_clinic())
    raw = request.args.get("starts_at")
    if raw:
        try:
            local = datetime.fromisoformat(raw).astimezone(tz)
            form.date.data, form.time.data = local.date(), local.time().replace(second=0, microsecond=0)
        except ValueError:
            pass
    form.therapist_id.data = request.args.get("therapist", type=int)
    form.duration.data = form.duration.data or appointments.slot_minutes(_clinic())
    return render_template("appointments/new.html", form=form, errors={})


@bp.post("/appointments/new")
@roles_required(*STAFF)
def create():
    form = _booking_form()
    errors: dict[str, str] = {}
    if form.validate_on_submit():
        tz = appointments.zone(_clinic())
        try:
            appt = appointments.book(
                clinic_id=current_user.clinic_id,
                therapist_id=form.therapist_id.data,
                starts_at=datetime.combine(form.date.data, form.time.data, tzinfo=tz),
                duration_minutes=form.duration.data,
                patient=appointments.PatientInput(
                    name=form.patient_name.data,
                    phone=form.patient_phone.data,
                    email=form.patient_email.data or None,
                    language=form.language.data or None,
                ),
                mode=form.mode.data,
                location=form.location.data,
                video_url=form.video_url.data,
                created_by_id=current_user.id,
            )
        except AppointmentError as exc:
            errors = {k.replace("patient.", "patient_"): v for k, v in exc.fields.items()}
            flash(exc.message, "error")
        else:
            flash("Booked. The patient's confirmation is on its way.", "success")
            return redirect(url_for("appointments.detail", appointment_id=appt.id))
    return render_template("appointments/new.html", form=form, errors=errors), 422


# --- one appointment ---------------------------------------------------------------------------


def _detail_ctx(appt) -> dict[str, Any]:
    tz = appointments.zone(_clinic())
    local = appt.starts_at.astimezone(tz)
    return {
        "appt": appt,
        "tz": _clinic().timezone,
        "reminders": reminders.for_appointment(clinic_id=appt.clinic_id, appointment_id=appt.id),
        "notices": reminders.notifications(clinic_id=appt.clinic_id, appointment_id=appt.id),
        "reschedule_form": RescheduleForm(formdata=None, date=local.date(), time=local.time()),
        "action_form": ActionForm(),
        "now": datetime.now(UTC),
        "free": appointments.next_free_slots(
            clinic_id=appt.clinic_id, therapist_id=appt.therapist_id, count=6, exclude_appointment_id=appt.id
        )
        if appt.active
        else [],
    }


@bp.get("/appointments/<int:appointment_id>")
@roles_required(*EVERYONE)
def detail(appointment_id: int):
    return render_template("appointments/detail.html", **_detail_ctx(_get(appointment_id)))


def _after_action(appt, message: str):
    """Sidebar quick actions get the sidebar back; everything else the appointment page."""
    if wants_fragment() and request.values.get("from") == "sidebar":
        resp = Response(render_template("appointments/_sidebar.html", contact=appt.patient.contact))
        resp.headers["Vary"] = "HX-Request"
        return resp
    flash(message, "success")
    return redirect(url_for("appointments.detail", appointment_id=appt.id))


def _action_error(appt, exc: AppointmentError):
    if wants_fragment() and request.values.get("from") == "sidebar":
        return Response(
            render_template("appointments/_sidebar.html", contact=appt.patient.contact, error=exc.message),
            422,
        )
    flash(exc.message, "error")
    return redirect(url_for("appointments.detail", appointment_id=appt.id))


@bp.post("/appointments/<int:appointment_id>/confirm")
@roles_required(*STAFF)
def confirm(appointment_id: int):
    appt = _get(appointment_id)
    try:
        appointments.confirm(clinic_id=current_user.clinic_id, appointment_id=appt.id)
    except AppointmentError as exc:
        return _action_error(appt, exc)
    return _after_action(appt, "Marked as confirmed.")


@bp.post("/appointments/<int:appointment_id>/cancel")
@roles_required(*STAFF)
def cancel(appointment_id: int):
    appt = _get(appointment_id)
    try:
        appointments.cancel(clinic_id=current_user.clinic_id, appointment_id=appt.id)
    except AppointmentError as exc:
        return _action_error(appt, exc)
    return _after_action(appt, "Cancelled. The patient is told and the time is free again.")


@bp.post("/appointments/<int:appointment_id>/reschedule")
@roles_required(*STAFF)
def reschedule(appointment_id: int):
    appt = _get(appointment_id)
    form = RescheduleForm()
    if not form.validate_on_submit():
        flash("Choose the new date and time.", "error")
        return redirect(url_for("appointments.detail", appointment_id=appt.id))
    try:
        appointments.reschedule(
            clinic_id=current_user.clinic_id,
            appointment_id=appt.id,
            starts_at=datetime.combine(form.date.data, form.time.data, tzinfo=appointments.zone(_clinic())),
        )
    except AppointmentError as exc:
        return _action_error(appt, exc)
    return _after_action(appt, "Moved. The patient is told the new time.")


@bp.post("/appointments/<int:appointment_id>/outcome")
@roles_required(*EVERYONE)
def outcome(appointment_id: int):
    appt = _get(appointment_id)
    ActionForm().validate_on_submit()
    try:
        appointments.set_outcome(
            clinic_id=current_user.clinic_id,
            appointment_id=appt.id,
            status=request.form.get("status", ""),
            therapist_id=current_user.id if current_user.role == Role.THERAPIST else None,
        )
    except AppointmentError as exc:
        flash(exc.message, "error")
    except NotFound:
        abort(404)
    else:
        flash("Saved.", "success")
    return redirect(request.form.get("next") or url_for("appointments.detail", appointment_id=appt.id))


# --- therapist pages ---------------------------------------------------------------------------


@bp.get("/me/week")
@roles_required(Role.THERAPIST)
def my_week():
    ctx = _calendar_ctx(current_user.id, for_me=True)
    return render_page_or_fragment("appointments/calendar.html", "appointments/_calendar.html", **ctx)


@bp.get("/me/upcoming")
@roles_required(Role.THERAPIST)
def my_upcoming():
    now = datetime.now(UTC)
    rows = appointments.list_appointments(
        clinic_id=current_user.clinic_id, therapist_id=current_user.id, start=now - timedelta(days=7)
    )
    return render_template(
        "appointments/my_upcoming.html",
        past=[a for a in rows if a.starts_at <= now and a.status != "cancelled"],
        upcoming=[a for a in rows if a.starts_at > now and a.active],
        tz=_clinic().timezone,
        action_form=ActionForm(),
    )


def _availability_page(form: AvailabilityForm, errors: dict[str, str], status: int = 200):
    return render_template(
        "appointments/availability.html",
        form=form,
        errors=errors,
        slots=appointments.list_availability(clinic_id=current_user.clinic_id, therapist_id=current_user.id),
        weekdays={str(i): name for i, name in enumerate(WEEKDAYS)},
        tz=_clinic().timezone,
        action_form=ActionForm(),
    ), status


@bp.get("/me/availability")
@roles_required(Role.THERAPIST)
def my_availability():
    return _availability_page(AvailabilityForm(formdata=None), {})


@bp.post("/me/availability")
@roles_required(Role.THERAPIST)
def add_availability():
    form = AvailabilityForm()
    if not form.validate_on_submit():
        return _availability_page(form, {k: "; ".join(v) for k, v in form.errors.items()}, 422)
    try:
        appointments.add_availability(
            clinic_id=current_user.clinic_id,
            therapist_id=current_user.id,
            kind=form.kind.data,
            weekday=int(form.weekday.data) if form.kind.data == "weekly" else None,
            start_time=form.start_time.data,
            end_time=form.end_time.data,
            day=form.day.data,
            note=form.note.data or "",
        )
    except AppointmentError as exc:
        return _availability_page(form, exc.fields, 422)
    flash("Availability saved.", "success")
    return redirect(url_for("appointments.my_availability"))


@bp.post("/me/availability/<int:slot_id>/delete")
@roles_required(Role.THERAPIST)
def delete_availability(slot_id: int):
    ActionForm().validate_on_submit()
    try:
        appointments.delete_availability(
            clinic_id=current_user.clinic_id, therapist_id=current_user.id, slot_id=slot_id
        )
    except NotFound:
        abort(404)
    flash("Removed.", "success")
    return redirect(url_for("appointments.my_availability"))


# --- settings (admins) -------------------------------------------------------------------------


def _settings_page(
    key_form: ApiKeyForm, settings_form: ReminderSettingsForm, errors: dict[str, str], **extra
):
    return render_template(
        "appointments/settings.html",
        key_form=key_form,
        settings_form=settings_form,
        errors=errors,
        keys=api_keys.list_for_clinic(clinic_id=current_user.clinic_id),
        action_form=ActionForm(),
        tz=_clinic().timezone,
        **extra,
    )


def _settings_form() -> ReminderSettingsForm:
    clinic = _clinic()
    quiet_start, quiet_end = reminders.quiet_hours_for(clinic)
    return ReminderSettingsForm(
        formdata=None,
        offsets=", ".join(reminders.offsets_for(clinic)),
        quiet_start=quiet_start,
        quiet_end=quiet_end,
        slot_minutes=appointments.slot_minutes(clinic),
    )


@bp.get("/settings/appointments")
@roles_required(Role.ADMIN)
def settings():
    return _settings_page(ApiKeyForm(formdata=None), _settings_form(), {})


@bp.post("/settings/appointments")
@roles_required(Role.ADMIN)
def save_settings():
    form = ReminderSettingsForm()
    if not form.validate_on_submit():
        return _settings_page(
            ApiKeyForm(formdata=None), form, {k: "; ".join(v) for k, v in form.errors.items()}
        ), 422
    try:
        appointments.update_settings(
            clinic_id=current_user.clinic_id,
            offsets=[o.strip() for o in (form.offsets.data or "").split(",") if o.strip()],
            quiet_start=form.quiet_start.data,
            quiet_end=form.quiet_end.data,
            slot_length=form.slot_minutes.data or appointments.DEFAULT_SLOT_MINUTES,
        )
    except AppointmentError as exc:
        return _settings_page(ApiKeyForm(formdata=None), form, exc.fields), 422
    flash("Reminder settings saved. New and changed appointments use them.", "success")
    return redirect(url_for("appointments.settings"))


@bp.post("/settings/api-keys")
@roles_required(Role.ADMIN)
def create_api_key():
    form = ApiKeyForm()
    if not form.validate_on_submit():
        return _settings_page(form, _settings_form(), {"name": "Name the key."}), 422
    key, token = api_keys.create(
        clinic_id=current_user.clinic_id, name=form.name.data, created_by_id=current_user.id
    )
    return _settings_page(ApiKeyForm(formdata=None), _settings_form(), {}, new_key=key, new_token=token)


@bp.post("/settings/api-keys/<int:key_id>/revoke")
@roles_required(Role.ADMIN)
def revoke_api_key(key_id: int):
    ActionForm().validate_on_submit()
    if not api_keys.revoke(clinic_id=current_user.clinic_id, key_id=key_id):
        abort(404)
    flash("Key revoked: systems using it can no longer call the API.", "success")
    return redirect(url_for("appointments.settings"))
