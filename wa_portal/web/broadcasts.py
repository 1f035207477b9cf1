"""Broadcast pages: past broadcasts with progress, the new-broadcast form with a live preview, a
confirmation step, and each broadcast's recipients (polled while it is sending)."""

from __future__ import annotations

import secrets
from typing import Any

from flask import Blueprint, abort, flash, make_response, redirect, render_template, url_for
from flask_login import current_user
from htmx_flask import request

from ..models import BroadcastKind, utcnow
from ..services import appointments, broadcasts, templates
from ..services.messaging import ComposeError, PhiBlocked, PhiWarning, TemplateUse
from .decorators import render_page_or_fragment, roles_required

bp = Blueprint("broadcasts", __name__, url_prefix="/broadcasts")

ROLES = ("admin", "staff")


def _form_values() -> dict[str, Any]:
    """The new-broadcast form as sent (query string for the live preview, body for posts)."""
    src = request.form if request.method == "POST" else request.args
    return {
        "kind": src.get("kind", BroadcastKind.EMERGENCY),
        "audience_type": src.get("audience_type", "appointments_on"),
        "date": src.get("date", ""),
        "therapist_id": src.get("therapist_id", ""),
        "days": src.get("days", "30"),
        "body": src.get("body", ""),
        "template": src.get("template", ""),
        "cancel_appointments": src.get("cancel_appointments") in ("1", "on", "true"),
        "token": src.get("token", ""),
        "confirm_phi": src.get("confirm_phi") in ("1", "on", "true"),
    }


def _audience(v: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": v["audience_type"],
        "date": v["date"],
        "therapist_id": v["therapist_id"],
        "days": v["days"],
    }


def _template(v: dict[str, Any]) -> TemplateUse | None:
    name, _, lang = (v["template"] or "").partition("|")
    return TemplateUse(name, lang) if name and lang else None


def _form_page(v: dict[str, Any], error: str | None = None, field: str | None = None, status: int = 200):
    clinic_id = current_user.clinic_id
    resp = make_response(
        render_template(
            "broadcasts/new.html",
            v=v,
            error=error,
            error_field=field,
            therapists=appointments.therapists(clinic_id=clinic_id),
            templates=templates.list_approved(clinic_id),
            audience_types=broadcasts.AUDIENCE_TYPES,
            pv=None,
        ),
        status,
    )
    return resp


@bp.get("/")
@roles_required(*ROLES)
def index():
    rows = broadcasts.list_recent(clinic_id=current_user.clinic_id)
    return render_page_or_fragment(
        "broadcasts/index.html",
        "broadcasts/_list.html",
        rows=rows,
        describe=broadcasts.describe,
        tz=current_user.clinic.timezone,
        sending=any(p.pending for _, p in rows),
    )


@bp.get("/new")
@roles_required(*ROLES)
def new():
    v = _form_values()
    if not v["date"]:
        # The day after today in the clinic's time zone: the usual "tomorrow is closed" case.
        from datetime import timedelta

        tz = appointments.zone(current_user.clinic)
        v["date"] = (utcnow().astimezone(tz).date() + timedelta(days=1)).isoformat()
    v["token"] = secrets.token_urlsafe(24)  # one per form: a double submit sends once
    return _form_page(v)


@bp.get("/preview")
@roles_required(*ROLES)
def preview():
    """The live recipient counts under the form (htmx, on every change)."""
    v = _form_values()
    try:
        pv = broadcasts.preview(
            clinic_id=current_user.clinic_id, audience=_audience(v), kind=v["kind"], template=_template(v)
        )
        error = None
    except ComposeError as exc:
        pv, error = None, str(exc)
    resp = make_response(render_template("broadcasts/_preview.html", pv=pv, v=v, error=error))
    resp.headers["Vary"] = "HX-Request"
    return resp


@bp.post("/new")
@roles_required(*ROLES)
def review():
    """Step two: check everything and state what will happen; nothing is sent yet."""
    v = _form_values()
    if request.form.get("edit"):
        return _form_page(v)
    try:
        return _confirm_page(v)
    except ComposeError as exc:
        return _form_page(v, str(exc), getattr(exc, "field", None), status=422)


def _confirm_page(v: dict[str, Any], phi_warning: str | None = None, status: int = 200):
    from ..services import messaging

    body = (v["body"] or "").strip()
    if not body:
        raise broadcasts.BroadcastError("Write the message first.", "body")
    if v["cancel_appointments"] and (v["kind"] != "emergency" or v["audience_type"] != "appointments_on"):
        raise broadcasts.BroadcastError(
            "Only an emergency for a day's appointments can cancel them.", "cancel"
        )
    pv = broadcasts.preview(
        clinic_id=current_user.clinic_id, audience=_audience(v), kind=v["kind"], template=_template(v)
    )
    if not pv.total:
        raise broadcasts.BroadcastError("Nobody in this audience can be reached.", "audience")
    if phi_warning is None:
        try:
            messaging.check_phi(clinic_id=current_user.clinic_id, text=body, confirmed=v["confirm_phi"])
        except PhiWarning as exc:
            phi_warning = str(exc)
    return make_response(
        render_template(
            "broadcasts/confirm.html",
            v=v,
            pv=pv,
            phi_warning=phi_warning,
            audience_text=broadcasts.describe(_audience(v), clinic_id=current_user.clinic_id),
        ),
        status,
    )


@bp.post("/send")
@roles_required(*ROLES)
def send():
    v = _form_values()
    try:
        outcome = broadcasts.send(
            clinic_id=current_user.clinic_id,
            user_id=current_user.id,
            kind=v["kind"],
            audience=_audience(v),
            body=v["body"],
            template=_template(v),
            cancel_appointments=v["cancel_appointments"],
            idempotency_key=v["token"] or None,
            confirm_phi=v["confirm_phi"],
        )
    except PhiWarning as exc:
        return _confirm_page(v, phi_warning=str(exc), status=422)
    except PhiBlocked as exc:
        return _form_page(v, str(exc), "body", status=422)
    except ComposeError as exc:
        return _form_page(v, str(exc), getattr(exc, "field", None), status=422)
    b = outcome.broadcast
    if outcome.duplicate:
        flash("This broadcast was already sent; it was not sent again.", "info")
    else:
        flash(f"Sending to {b.recipients_count} patients.", "success")
    return redirect(url_for("broadcasts.detail", broadcast_id=b.id), code=303)


@bp.get("/<int:broadcast_id>")
@roles_required(*ROLES)
def detail(broadcast_id: int):
    try:
        b, progress = broadcasts.progress(clinic_id=current_user.clinic_id, broadcast_id=broadcast_id)
    except broadcasts.BroadcastNotFound:
        abort(404)
    rows = broadcasts.recipients(clinic_id=current_user.clinic_id, broadcast_id=b.id)
    return render_page_or_fragment(
        "broadcasts/detail.html",
        "broadcasts/_detail.html",
        b=b,
        progress=progress,
        rows=rows,
        audience_text=broadcasts.describe(b.audience, clinic_id=current_user.clinic_id),
        tz=current_user.clinic.timezone,
    )
