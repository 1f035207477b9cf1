"""JSON API for other clinic systems (/api/v1): book, move, cancel and read appointments and their notices.

``Authorization: Bearer <api key>`` (per clinic, ``flask wa create-api-key``). Errors are always
``{"error": {"code", "message", "fields"?}}``: 400 with field errors, 401, 404 (another clinic's
appointment does not exist for you), 409 when the slot is taken. CSRF-exempt; rate-limited per key.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

from flask import Blueprint, g, jsonify, request
from flask.typing import ResponseReturnValue

from ..extensions import csrf, db, limiter
from ..models import Appointment, Clinic, Message
from ..services import api_keys, appointments, reminders

bp = Blueprint("api", __name__, url_prefix="/api/v1")
csrf.exempt(bp)


def _rate_key() -> str:
    auth = request.headers.get("Authorization", "")
    return (
        "api:" + hashlib.sha256(auth.encode()).hexdigest()[:16]
        if auth
        else "api-ip:" + (request.remote_addr or "")
    )


limiter.limit("300 per minute", key_func=_rate_key)(bp)


def error(status: int, code: str, message: str, fields: dict[str, str] | None = None) -> ResponseReturnValue:
    body: dict[str, Any] = {"code": code, "message": message}
    if fields:
        body["fields"] = fields
    return jsonify({"error": body}), status


@bp.before_request
def _authenticate() -> ResponseReturnValue | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    key = api_keys.authenticate(token.strip()) if scheme.lower() == "bearer" else None
    if key is None:
        resp = error(401, "unauthorized", "A valid API key is required: Authorization: Bearer <key>.")
        return resp
    g.api_key = key
    g.clinic_id = key.clinic_id
    return None


@bp.errorhandler(appointments.NotFound)
def _not_found(exc: appointments.NotFound) -> ResponseReturnValue:
    return error(404, "not_found", f"No such {exc.args[0] if exc.args else 'resource'}.")


@bp.errorhandler(appointments.SlotTaken)
def _taken(exc: appointments.SlotTaken) -> ResponseReturnValue:
    return error(409, "slot_taken", exc.message, exc.fields)


@bp.errorhandler(appointments.AppointmentError)
def _invalid(exc: appointments.AppointmentError) -> ResponseReturnValue:
    return error(400 if exc.fields else 409, "invalid" if exc.fields else "conflict", exc.message, exc.fields)


# --- serialisation -----------------------------------------------------------------------------


def _iso(value: datetime | None, clinic: Clinic) -> str | None:
    return value.astimezone(appointments.zone(clinic)).isoformat() if value else None


def appointment_json(appt: Appointment) -> dict[str, Any]:
    clinic = appointments.clinic_of(appt.clinic_id)
    patient = appt.patient
    return {
        "id": appt.id,
        "status": str(appt.status),
        "starts_at": _iso(appt.starts_at, clinic),
        "ends_at": _iso(appt.ends_at, clinic),
        "duration_minutes": appt.duration_minutes,
        "mode": str(appt.mode),
        "location": appt.location,
        "video_url": appt.video_url,
        "therapist": {
            "id": appt.therapist.id,
            "name": appt.therapist.display_name,
            "email": appt.therapist.email,
        },
        "patient": {
            "id": patient.id,
            "name": patient.full_name,
            "phone": patient.contact.phone,
            "email": patient.email,
            "language": patient.language,
        },
        "reminders": [
            {"kind": r.kind, "due_at": _iso(r.due_at, clinic), "state": str(r.state)}
            for r in reminders.for_appointment(clinic_id=appt.clinic_id, appointment_id=appt.id)
        ],
        "created_at": _iso(appt.created_at, clinic),
    }


def notification_json(msg: Message, clinic: Clinic) -> dict[str, Any]:
    return {
        "id": msg.id,
        "type": msg.purpose,
        "channel": msg.channel,
        "status": str(msg.status),
        "template": msg.template_name,
        "created_at": _iso(msg.created_at, clinic),
        "sent_at": _iso(msg.sent_at, clinic),
        "delivered_at": _iso(msg.delivered_at, clinic),
        "read_at": _iso(msg.read_at, clinic),
        "failed_at": _iso(msg.failed_at, clinic),
        "error": {"code": msg.error_code, "detail": msg.error_detail} if msg.error_code else None,
    }


# --- input -------------------------------------------------------------------------------------


def _body() -> dict[str, Any]:
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        raise appointments.AppointmentError(
            "The body must be a JSON object.", {"body": "Send a JSON object."}
        )
    return data


def _datetime(value: Any, name: str, fields: dict[str, str]) -> datetime | None:
    if value is None:
        fields[name] = "Required."
        return None
    try:
        parsed = datetime.fromisoformat(str(value))
    except ValueError:
        fields[name] = "Use ISO 8601 with an offset, e.g. 2026-03-30T10:00:00+02:00."
        return None
    if parsed.tzinfo is None:
        fields[name] = "Add the UTC offset, e.g. +02:00 or Z."
        return None
    return parsed


def _int(value: Any, name: str, fields: dict[str, str], required: bool = False) -> int | None:
    if value is None:
        if required:
            fields[name] = "Required."
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        fields[name] = "Must be a whole number."
        return None
    return value


def _str(value: Any, name: str, fields: dict[str, str]) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        fields[name] = "Must be a string."
        return None
    return value


def _invalid_fields(fields: dict[str, str]) -> None:
    if fields:
        raise appointments.AppointmentError("Some fields need fixing.", fields)


# --- endpoints ---------------------------------------------------------------------------------


@bp.post("/appointments")
def create_appointment() -> ResponseReturnValue:
    data = _body()
    fields: dict[str, str] = {}
    therapist_id = _int(data.get("therapist_id"), "therapist_id", fields)
    therapist_email = _str(data.get("therapist_email"), "therapist_email", fields)
    if therapist_id is None and not therapist_email and "therapist_id" not in fields:
        fields["therapist_id"] = "Give therapist_id or therapist_email."
    starts_at = _datetime(data.get("starts_at"), "starts_at", fields)
    duration = _int(data.get("duration_minutes"), "duration_minutes", fields)
    patient_id = _int(data.get("patient_id"), "patient_id", fields)
    patient_input = None
    raw_patient = data.get("patient")
    if patient_id is None:
        if not isinstance(raw_patient, dict):
            fields["patient"] = "Give patient {name, phone, email?, language?} or patient_id."
        else:
            name = _str(raw_patient.get("name"), "patient.name", fields)
            phone = _str(raw_patient.get("phone"), "patient.phone", fields)
            patient_input = appointments.PatientInput(
                name=name or "",
                phone=phone or "",
                email=_str(raw_patient.get("email"), "patient.email", fields),
                language=_str(raw_patient.get("language"), "patient.language", fields),
            )
    mode = _str(data.get("mode"), "mode", fields) or "in_person"
    location = _str(data.get("location"), "location", fields)
    video_url = _str(data.get("video_url"), "video_url", fields)
    _invalid_fields(fields)
    if therapist_id is None:
        try:
            therapist_id = appointments.get_therapist(clinic_id=g.clinic_id, email=therapist_email).id
        except appointments.NotFound:
            raise appointments.AppointmentError(
                "Unknown therapist.", {"therapist_email": "No therapist with this email in the clinic."}
            ) from None
    appt = appointments.book(
        clinic_id=g.clinic_id,
        therapist_id=therapist_id,
        starts_at=starts_at,
        duration_minutes=duration,
        patient_id=patient_id,
        patient=patient_input,
        mode=mode,
        location=location,
        video_url=video_url,
        source="api",
    )
    resp = jsonify(appointment_json(appt))
    resp.status_code = 201
    resp.headers["Location"] = f"/api/v1/appointments/{appt.id}"
    return resp


@bp.get("/appointments/<int:appointment_id>")
def get_appointment(appointment_id: int) -> ResponseReturnValue:
    return jsonify(appointment_json(appointments.get(clinic_id=g.clinic_id, appointment_id=appointment_id)))


PATCHABLE = {"starts_at", "duration_minutes", "status"}


@bp.patch("/appointments/<int:appointment_id>")
def update_appointment(appointment_id: int) -> ResponseReturnValue:
    appointments.get(clinic_id=g.clinic_id, appointment_id=appointment_id)  # 404 before any 400
    data = _body()
    fields: dict[str, str] = {name: "Cannot be changed here." for name in data if name not in PATCHABLE}
    status = _str(data.get("status"), "status", fields)
    if status is not None and status not in ("cancelled", "confirmed", "completed", "no_show"):
        fields["status"] = "Use cancelled, confirmed, completed or no_show."
    starts_at = _datetime(data["starts_at"], "starts_at", fields) if "starts_at" in data else None
    duration = _int(data.get("duration_minutes"), "duration_minutes", fields)
    if not data:
        fields["body"] = "Give starts_at (reschedule) or status."
    if status and (starts_at or duration):
        fields["status"] = "Change the time or the status, not both at once."
    _invalid_fields(fields)
    if status == "cancelled":
        appt = appointments.cancel(clinic_id=g.clinic_id, appointment_id=appointment_id)
    elif status == "confirmed":
        appt = appointments.confirm(clinic_id=g.clinic_id, appointment_id=appointment_id)
    elif status in ("completed", "no_show"):
        appt = appointments.set_outcome(clinic_id=g.clinic_id, appointment_id=appointment_id, status=status)
    else:
        current = appointments.get(clinic_id=g.clinic_id, appointment_id=appointment_id)
        appt = appointments.reschedule(
            clinic_id=g.clinic_id,
            appointment_id=appointment_id,
            starts_at=starts_at or current.starts_at,
            duration_minutes=duration,
        )
    db.session.expire_all()
    return jsonify(appointment_json(appointments.get(clinic_id=g.clinic_id, appointment_id=appt.id)))


@bp.get("/notifications")
def list_notifications() -> ResponseReturnValue:
    raw = request.args.get("appointment_id", "")
    if not raw.isdigit():
        return error(400, "invalid", "Give appointment_id.", {"appointment_id": "Must be a whole number."})
    appt = appointments.get(clinic_id=g.clinic_id, appointment_id=int(raw))
    clinic = appointments.clinic_of(g.clinic_id)
    items = reminders.notifications(clinic_id=g.clinic_id, appointment_id=appt.id)
    return jsonify(
        {"appointment_id": appt.id, "notifications": [notification_json(m, clinic) for m in items]}
    )
