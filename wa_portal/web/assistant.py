"""The assistant's settings page for admins: on/off switches, FAQ answers, a live preview.

Every query is scoped to the signed-in admin's clinic; validation and matching live in
services/assistant.py and services/assistant_faq.py.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user
from flask_wtf import FlaskForm
from wtforms import BooleanField, StringField, TextAreaField

from ..models import Role
from ..services import assistant as svc
from ..services.assistant_faq import MIN_SCORE
from .decorators import render_page_or_fragment, roles_required, wants_fragment

bp = Blueprint("assistant", __name__, url_prefix="/settings/assistant")


class SwitchesForm(FlaskForm):
    enabled = BooleanField("Let the assistant answer patients (FAQ answers and hand-off to a person)")
    booking = BooleanField("Let patients book a new appointment by message")


class EntryForm(FlaskForm):
    question = StringField("Question")
    keywords = TextAreaField("Words and phrases that trigger it")
    answer = TextAreaField("Answer")
    enabled = BooleanField("Answer with this entry", default=True)

    def raw(self) -> dict[str, Any]:
        return {
            "question": self.question.data,
            "keywords": self.keywords.data,
            "answer": self.answer.data,
            "enabled": self.enabled.data,
        }


class ActionForm(FlaskForm):
    """CSRF only: the enable/disable and delete buttons."""


def _page_context(
    entry_form: EntryForm | None = None, errors: dict[str, str] | None = None
) -> dict[str, Any]:
    clinic = current_user.clinic
    current = svc.switches(clinic)
    return {
        "switches_form": SwitchesForm(data={"enabled": current.enabled, "booking": current.booking}),
        "switches": current,
        "entry_form": entry_form or EntryForm(),
        "action_form": ActionForm(),
        "entries": svc.list_entries(clinic_id=clinic.id),
        "errors": errors or {},
        "quiet_hours": svc.QUIET_HOURS,
        "min_percent": round(MIN_SCORE * 100),
    }


def _page(entry_form: EntryForm | None = None, errors: dict[str, str] | None = None, status: int = 200):
    preview = svc.preview(clinic_id=current_user.clinic_id, text="")
    return render_template(
        "settings/assistant/page.html", **_page_context(entry_form, errors), text="", preview=preview
    ), status


def _entry_or_404(entry_id: int):
    try:
        return svc.get_entry(clinic_id=current_user.clinic_id, entry_id=entry_id)
    except svc.NotFound:
        abort(404)


@bp.get("")
@roles_required(Role.ADMIN)
def index():
    return _page()


@bp.post("/switches")
@roles_required(Role.ADMIN)
def save_switches():
    form = SwitchesForm()
    saved = svc.save_switches(
        clinic_id=current_user.clinic_id,
        user_id=current_user.id,
        enabled=bool(form.enabled.data),
        booking=bool(form.booking.data),
    )
    if not saved.enabled:
        flash("The assistant is off: every message waits for a person.", "success")
    else:
        flash(
            "The assistant is on"
            + (", booking by message included." if saved.booking else "; booking by message is off."),
            "success",
        )
    return redirect(url_for("assistant.index"))


@bp.post("/faq")
@roles_required(Role.ADMIN)
def add_entry():
    form = EntryForm()
    result = svc.validate_entry(form.raw())
    if not result.ok:
        return _page(form, result.errors, 422)
    try:
        entry = svc.create_entry(
            clinic_id=current_user.clinic_id, user_id=current_user.id, values=result.values
        )
    except ValueError as exc:
        return _page(form, {"question": str(exc)}, 422)
    flash(f"Added “{entry.question}”.", "success")
    return redirect(url_for("assistant.index"))


@bp.get("/faq/<int:entry_id>")
@roles_required(Role.ADMIN)
def edit_entry(entry_id: int):
    entry = _entry_or_404(entry_id)
    form = EntryForm(
        data={
            "question": entry.question,
            "keywords": "\n".join(entry.keywords or []),
            "answer": entry.answer,
            "enabled": entry.enabled,
        }
    )
    return render_template("settings/assistant/edit.html", entry=entry, form=form, errors={})


@bp.post("/faq/<int:entry_id>")
@roles_required(Role.ADMIN)
def update_entry(entry_id: int):
    entry = _entry_or_404(entry_id)
    form = EntryForm()
    result = svc.validate_entry(form.raw())
    if not result.ok:
        return render_template(
            "settings/assistant/edit.html", entry=entry, form=form, errors=result.errors
        ), 422
    svc.update_entry(
        clinic_id=current_user.clinic_id, entry_id=entry.id, user_id=current_user.id, values=result.values
    )
    flash(f"Saved “{result.values['question']}”.", "success")
    return redirect(url_for("assistant.index"))


@bp.post("/faq/<int:entry_id>/enabled")
@roles_required(Role.ADMIN)
def toggle_entry(entry_id: int):
    entry = _entry_or_404(entry_id)
    enabled = request.form.get("enabled") == "1"
    svc.set_entry_enabled(
        clinic_id=current_user.clinic_id, entry_id=entry.id, user_id=current_user.id, enabled=enabled
    )
    flash(f"“{entry.question}” is {'on' if enabled else 'off'}.", "success")
    return redirect(url_for("assistant.index"))


@bp.post("/faq/<int:entry_id>/delete")
@roles_required(Role.ADMIN)
def delete_entry(entry_id: int):
    entry = _entry_or_404(entry_id)
    question = entry.question
    svc.delete_entry(clinic_id=current_user.clinic_id, entry_id=entry.id, user_id=current_user.id)
    flash(f"Deleted “{question}”.", "success")
    return redirect(url_for("assistant.index"))


@bp.get("/preview")
@roles_required(Role.ADMIN)
def preview():
    """The page with the preview filled in, or just the preview for the live field (HX-Request)."""
    text = (request.args.get("text") or "")[:1000]
    result = svc.preview(clinic_id=current_user.clinic_id, text=text)
    ctx: dict[str, Any] = {"min_percent": round(MIN_SCORE * 100)} if wants_fragment() else _page_context()
    return render_page_or_fragment(
        "settings/assistant/page.html", "settings/assistant/_preview.html", preview=result, text=text, **ctx
    )
