"""The simulated patient phone (SANDBOX_ENABLED): type as a patient, see what the clinic sends."""

from __future__ import annotations

from flask import Blueprint, abort, render_template, request
from flask_login import current_user, login_required

from ..services import connections, sandbox
from ..services.phones import InvalidPhone, normalize
from .decorators import public_base_url
from .forms import SandboxMessageForm

bp = Blueprint("sandbox", __name__, url_prefix="/sandbox")

DEFAULT_PATIENT = "+34612345678"


def _connection():
    conns = connections.list_for_clinic(current_user.clinic_id, provider="sandbox")
    if not conns:
        abort(404)
    wanted = request.values.get("connection", type=int)
    return next((c for c in conns if c.id == wanted), conns[0])


def _phone(raw: str | None) -> str:
    try:
        return normalize(raw or DEFAULT_PATIENT, current_user.clinic.country)
    except InvalidPhone:
        return DEFAULT_PATIENT


@bp.get("/phone")
@login_required
def phone():
    conn = _connection()
    patient = _phone(request.args.get("phone"))
    form = SandboxMessageForm(phone=patient, name=request.args.get("name", "Maria Lopez"))
    sandbox.acknowledge(conn, patient_phone=patient, base_url=public_base_url())
    return render_template(
        "sandbox/phone.html", conn=conn, patient=patient, form=form, log=sandbox.phone_log(conn, patient)
    )


@bp.get("/phone/log")
@login_required
def phone_log():
    conn = _connection()
    patient = _phone(request.args.get("phone"))
    sandbox.acknowledge(conn, patient_phone=patient, base_url=public_base_url())
    return render_template(
        "sandbox/_log.html", conn=conn, patient=patient, log=sandbox.phone_log(conn, patient)
    )


@bp.post("/phone/send")
@login_required
def phone_send():
    conn = _connection()
    form = SandboxMessageForm()
    error = None
    patient = _phone(form.phone.data)
    if form.validate_on_submit():
        sandbox.patient_says(
            conn,
            patient_phone=patient,
            patient_name=(form.name.data or "").strip() or "Patient",
            text=form.text.data.strip(),
            base_url=public_base_url(),
            button_payload=request.form.get("button_payload") or None,
        )
    else:
        error = "Type a message first."
    return render_template(
        "sandbox/_phone_body.html",
        conn=conn,
        patient=patient,
        form=SandboxMessageForm(phone=patient, name=form.name.data),
        error=error,
        log=sandbox.phone_log(conn, patient),
    )
