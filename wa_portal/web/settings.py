"""Clinic settings pages for admins: clinic identity, messaging policy, provider connections.

Every query is scoped to the signed-in admin's clinic; validation lives in services/clinic_settings.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_login import current_user
from flask_wtf import FlaskForm
from wtforms import BooleanField, RadioField, SelectChoice, SelectField, StringField, TextAreaField

from ..models import Role
from ..services import clinic_settings as svc
from .decorators import public_base_url, render_page_or_fragment, roles_required, wants_fragment

bp = Blueprint("settings", __name__, url_prefix="/settings")

CHANNEL_CHOICES = [SelectChoice("", "— none —")] + [SelectChoice(k, v) for k, v in svc.CHANNEL_NAMES.items()]
CHAIN_SLOTS = ("fallback_1", "fallback_2", "fallback_3")


class ClinicForm(FlaskForm):
    name = StringField("Clinic name")
    timezone = StringField("Timezone")
    locale = SelectField(
        "Language for messages to patients", choices=[SelectChoice(k, v) for k, v in svc.LOCALES.items()]
    )
    country = SelectField("Default country for phone numbers", choices=[])


class MessagingForm(FlaskForm):
    phi_policy = RadioField(
        "Health data in free text", choices=[SelectChoice(k, k) for k in svc.PHI_POLICIES]
    )
    phi_terms = TextAreaField("Extra sensitive words")
    fallback_1 = SelectField("First channel", choices=CHANNEL_CHOICES)
    fallback_2 = SelectField("Second channel", choices=CHANNEL_CHOICES)
    fallback_3 = SelectField("Third channel", choices=CHANNEL_CHOICES)
    critical_timeout_minutes = StringField("Critical message timeout (minutes)")
    max_attempts = StringField("Attempts per channel")
    emergency_to_opted_out = BooleanField("Send emergency alerts to patients who opted out")

    def raw(self) -> dict[str, Any]:
        """Form values as the service reads them (the three channel slots become one ordered list)."""
        data: dict[str, Any] = {k: getattr(self, k).data for k in svc.MESSAGING_KEYS if k != "fallback_chain"}
        data["fallback_chain"] = [getattr(self, s).data for s in CHAIN_SLOTS]
        return data


def _country_choices() -> list[SelectChoice]:
    return [SelectChoice(code, name) for code, name in svc.country_choices("en")]


@bp.route("", methods=["GET", "POST"])
@roles_required(Role.ADMIN)
def index():
    return redirect(url_for("settings.clinic"), code=303 if request.method == "POST" else 302)


# --- clinic ----------------------------------------------------------------------------------------


def _clinic_page(form: ClinicForm, errors: dict[str, str], status: int = 200):
    form.country.choices = _country_choices()
    return render_template(
        "settings/clinic.html", form=form, errors=errors, timezones=svc.timezones()
    ), status


@bp.get("/clinic")
@roles_required(Role.ADMIN)
def clinic():
    return _clinic_page(ClinicForm(data=svc.clinic_values(current_user.clinic)), {})


@bp.post("/clinic")
@roles_required(Role.ADMIN)
def save_clinic():
    form = ClinicForm()
    result = svc.validate_clinic(
        {
            "name": form.name.data,
            "timezone": form.timezone.data,
            "locale": form.locale.data,
            "country": form.country.data,
        }
    )
    if not result.ok:
        return _clinic_page(form, result.errors, 422)
    svc.save_clinic(clinic_id=current_user.clinic_id, user_id=current_user.id, values=result.values)
    flash("Clinic details saved.", "success")
    return redirect(url_for("settings.clinic"))


# --- messaging -------------------------------------------------------------------------------------


def _messaging_page(form: MessagingForm, errors: dict[str, str], status: int = 200):
    return render_template(
        "settings/messaging.html",
        form=form,
        errors=errors,
        policies=svc.PHI_POLICIES,
        max_terms=svc.MAX_PHI_TERMS,
        defaults={
            "phi_policy": svc.DEFAULT_PHI_POLICY,
            "critical_timeout_minutes": svc.DEFAULT_CRITICAL_TIMEOUT_MINUTES,
            "max_attempts": svc.DEFAULT_MAX_ATTEMPTS,
        },
    ), status


@bp.get("/messaging")
@roles_required(Role.ADMIN)
def messaging():
    current = svc.messaging_values(current_user.clinic)
    chain = current["fallback_chain"] + [""] * len(CHAIN_SLOTS)
    data = {
        **current,
        "phi_terms": "\n".join(current["phi_terms"]),
        **{slot: chain[i] for i, slot in enumerate(CHAIN_SLOTS)},
    }
    return _messaging_page(MessagingForm(data=data), {})


@bp.post("/messaging")
@roles_required(Role.ADMIN)
def save_messaging():
    form = MessagingForm()
    result = svc.validate_messaging(form.raw())
    if not result.ok:
        return _messaging_page(form, result.errors, 422)
    svc.save_messaging(clinic_id=current_user.clinic_id, user_id=current_user.id, values=result.values)
    flash("Messaging policy saved. New messages follow it at once.", "success")
    return redirect(url_for("settings.messaging"))


# --- connections -----------------------------------------------------------------------------------


@bp.get("/connections")
@roles_required(Role.ADMIN)
def connections():
    return render_template(
        "settings/connections.html",
        rows=svc.connection_views(current_user.clinic_id, base_url=public_base_url()),
        tz=current_user.clinic.timezone,
    )


@bp.post("/connections/<int:connection_id>/check")
@roles_required(Role.ADMIN)
def check_connection(connection_id: int):
    # CSRFProtect (app-wide) has already refused a POST without a valid token.
    row = svc.check_connection(
        clinic_id=current_user.clinic_id, connection_id=connection_id, base_url=public_base_url()
    )
    if not wants_fragment():
        flash(f"{row.conn.label or row.provider_name}: {row.conn.status}.", "success")
        return redirect(url_for("settings.connections"))
    return render_page_or_fragment(
        "settings/connections.html",
        "settings/_connection_row.html",
        r=row,
        tz=current_user.clinic.timezone,
    )
