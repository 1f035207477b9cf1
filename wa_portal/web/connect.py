"""Connecting a WhatsApp number (or an SMS / email sender) in the browser, for admins.

A chooser, one form per provider built from the adapter's settings schema, edit, (de)activate, and
Meta's embedded signup. Validation and every write live in services/connect; WAHA's QR flow is
web/waha_pairing.py (linked from the chooser by its path).
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user
from flask_wtf import FlaskForm
from wtforms import Field, PasswordField, StringField

from .. import CSP
from ..models import Connection, Role
from ..services import clinic_settings, connections
from ..services import connect as svc
from .decorators import public_base_url, render_page_or_fragment, roles_required, wants_fragment

bp = Blueprint("connect", __name__, url_prefix="/settings/connections")

PROVIDER_PATH = "any(" + ", ".join(svc.FORM_PROVIDERS) + "):provider"
WAHA_PATH = "/settings/connections/new/waha"  # waha_pair.new, another blueprint

# The embedded-signup page loads Facebook's SDK, which opens Facebook in a popup and iframes. COOP
# same-origin would cut the popup off from this page (no postMessage back), so this one page relaxes it.
# Docs: https://developers.facebook.com/docs/whatsapp/embedded-signup/implementation
FB_SDK_URL = "https://connect.facebook.net/en_US/sdk.js"
SIGNUP_CSP = (
    CSP.replace("script-src 'self'", "script-src 'self' https://connect.facebook.net")
    .replace("connect-src 'self'", "connect-src 'self' https://*.facebook.com https://connect.facebook.net")
    .replace("img-src 'self'", "img-src 'self' https://*.facebook.com https://*.fbcdn.net")
    + "; frame-src https://*.facebook.com"
)


def _provider_or_404(provider: str) -> str:
    if provider == "sandbox" and not current_app.config["SANDBOX_ENABLED"]:
        abort(404)
    return provider


def _form_class(provider: str) -> type[FlaskForm]:
    """A FlaskForm with the label plus one input per setting; secret ones are password inputs."""
    fields: dict[str, Field] = {"label": StringField("Name shown to staff (optional)")}
    for f in svc.form_fields(provider):
        text = f.label if f.required else f"{f.label} (optional)"
        # PasswordField never renders its value back, so a secret cannot leak into the page.
        fields[f.name] = PasswordField(text) if f.secret else StringField(text)
    return type(f"{provider.title()}ConnectForm", (FlaskForm,), fields)


def _raw(form: FlaskForm) -> dict[str, Any]:
    return {name: field.data for name, field in form._fields.items() if name != "csrf_token"}


# --- the chooser ------------------------------------------------------------------------------------


@bp.get("/new")
@roles_required(Role.ADMIN)
def choose():
    return render_template(
        "settings/connect_choose.html",
        embedded_signup=svc.meta_signup_configured(current_app.config),
        waha_path=WAHA_PATH,
    )


# --- one form per provider --------------------------------------------------------------------------


def _form_page(
    provider: str,
    form: FlaskForm,
    errors: dict[str, str],
    status: int = 200,
    *,
    conn: Connection | None = None,
    form_error: str = "",
    signup: dict[str, Any] | None = None,
):
    embedded = provider == "meta" and conn is None and svc.meta_signup_configured(current_app.config)
    ctx: dict[str, Any] = {
        "provider": provider,
        "provider_name": svc.display_name(provider),
        "form": form,
        "errors": errors,
        "form_error": form_error,
        "schema": svc.form_fields(provider),
        "conn": conn,
        "secrets_set": svc.secret_names_set(conn) if conn is not None else set(),
        "view": None if conn is None else clinic_settings.connection_view(conn, base_url=public_base_url()),
        "embedded_signup": embedded,
        "signup": signup or {},
    }
    if embedded:
        ctx["meta_app"] = {
            "app_id": current_app.config["META_APP_ID"],
            "config_id": current_app.config["META_CONFIG_ID"],
            "version": svc.graph_version(current_app.config["META_GRAPH_BASE_URL"]),
            "sdk_url": FB_SDK_URL,
        }
    resp = current_app.make_response((render_template("settings/connect_form.html", **ctx), status))
    if embedded:
        resp.headers["Content-Security-Policy"] = SIGNUP_CSP
        resp.headers["Cross-Origin-Opener-Policy"] = "same-origin-allow-popups"
    return resp


@bp.get(f"/new/<{PROVIDER_PATH}>")
@roles_required(Role.ADMIN)
def new(provider: str):
    provider = _provider_or_404(provider)
    defaults = {f.name: f.default for f in svc.form_fields(provider) if f.default and not f.secret}
    if provider == "meta":  # the Graph the platform app talks to (a local stand-in in development)
        defaults["base_url"] = current_app.config["META_GRAPH_BASE_URL"]
    return _form_page(provider, _form_class(provider)(data=defaults), {})


@bp.post(f"/new/<{PROVIDER_PATH}>")
@roles_required(Role.ADMIN)
def create(provider: str):
    provider = _provider_or_404(provider)
    form = _form_class(provider)()
    result = svc.validate(provider, _raw(form), country=current_user.clinic.country)
    if not result.ok:
        return _form_page(provider, form, result.errors, 422)
    try:
        conn = svc.create(
            clinic_id=current_user.clinic_id, user_id=current_user.id, provider=provider, values=result.values
        )
    except svc.ConnectError as exc:
        return _form_page(provider, form, {}, 422, form_error=str(exc))
    return _created(conn, signup=False)


def _created(conn: Connection, *, signup: bool):
    """The result page, answered to the POST itself: the webhook URL (with 360dialog's or SES's path token,
    or a generated Meta verify token) is shown this once and never again. 201 + Location name the new
    connection (the audit trail reads its id from there)."""
    secrets = connections.get_secrets(conn)
    shown_verify_token = secrets.get("verify_token") if conn.provider == "meta" and not signup else None
    body = render_template(
        "settings/connect_done.html",
        conn=conn,
        view=clinic_settings.connection_view(conn, base_url=public_base_url()),
        webhook_url=connections.webhook_url(conn, public_base_url()),
        verify_token=shown_verify_token,
        signup=signup,
    )
    resp = current_app.make_response((body, 201))
    resp.headers["Location"] = url_for("connect.edit", connection_id=conn.id)
    return resp


# --- edit and (de)activate ----------------------------------------------------------------------------


@bp.get("/<int:connection_id>/edit")
@roles_required(Role.ADMIN)
def edit(connection_id: int):
    conn = connections.get_for_clinic(clinic_id=current_user.clinic_id, connection_id=connection_id)
    if conn.provider not in svc.FORM_PROVIDERS:
        abort(404)  # WAHA is managed on its own page
    return _form_page(conn.provider, _form_class(conn.provider)(data=svc.edit_values(conn)), {}, conn=conn)


@bp.post("/<int:connection_id>/edit")
@roles_required(Role.ADMIN)
def update(connection_id: int):
    conn = connections.get_for_clinic(clinic_id=current_user.clinic_id, connection_id=connection_id)
    if conn.provider not in svc.FORM_PROVIDERS:
        abort(404)
    form = _form_class(conn.provider)()
    result = svc.validate(
        conn.provider,
        _raw(form),
        country=current_user.clinic.country,
        kept_secrets=svc.secret_names_set(conn),
    )
    if not result.ok:
        return _form_page(conn.provider, form, result.errors, 422, conn=conn)
    try:
        conn = svc.update(
            clinic_id=current_user.clinic_id,
            user_id=current_user.id,
            connection_id=conn.id,
            values=result.values,
        )
    except svc.ConnectError as exc:
        return _form_page(conn.provider, form, {}, 422, conn=conn, form_error=str(exc))
    flash(f"{conn.label}: saved. Status: {conn.status}.", "success")
    return redirect(url_for("settings.connections"), code=303)


def _set_active(connection_id: int, active: bool):
    try:
        conn = svc.set_active(
            clinic_id=current_user.clinic_id,
            user_id=current_user.id,
            connection_id=connection_id,
            active=active,
        )
    except svc.ConnectError as exc:
        flash(str(exc), "error")
        return _to_connections()
    # The connections table swaps the row in place; elsewhere (the edit page) the answer is that table.
    if request.headers.get("HX-Target") != f"conn-{connection_id}" or not wants_fragment():
        flash(f"{conn.label}: {'reactivated' if active else 'deactivated'}.", "success")
        return _to_connections()
    return render_page_or_fragment(
        "settings/connections.html",
        "settings/_connection_row.html",
        r=clinic_settings.connection_view(conn, base_url=public_base_url()),
        tz=current_user.clinic.timezone,
    )


def _to_connections():
    if wants_fragment():  # htmx (after hx-confirm): a full navigation, so the flash is shown
        resp = current_app.make_response(("", 204))
        resp.headers["HX-Redirect"] = url_for("settings.connections")
        return resp
    return redirect(url_for("settings.connections"), code=303)


@bp.post("/<int:connection_id>/deactivate")
@roles_required(Role.ADMIN)
def deactivate(connection_id: int):
    return _set_active(connection_id, False)


@bp.post("/<int:connection_id>/reactivate")
@roles_required(Role.ADMIN)
def reactivate(connection_id: int):
    return _set_active(connection_id, True)


# --- Meta embedded signup ---------------------------------------------------------------------------


@bp.post("/meta/signup")
@roles_required(Role.ADMIN)
def meta_signup():
    config = current_app.config
    if not svc.meta_signup_configured(config):
        abort(404)
    result = svc.validate_signup(request.form)
    form = _form_class("meta")(formdata=None, data={"base_url": config["META_GRAPH_BASE_URL"]})
    # The code is used once: the page never puts it back; the ids are kept for the message only.
    if not result.ok:
        signup = {"errors": result.errors, "label": result.values["label"]}
        return _form_page("meta", form, {}, 422, signup=signup)
    try:
        conn = svc.meta_signup(
            clinic_id=current_user.clinic_id,
            user_id=current_user.id,
            values=result.values,
            app_id=config["META_APP_ID"],
            app_secret=config["META_APP_SECRET"],
            graph_url=config["META_GRAPH_BASE_URL"],
        )
    except svc.SignupError as exc:
        signup = {"errors": {"signup": exc.message}, "detail": exc.detail, "label": result.values["label"]}
        return _form_page("meta", form, {}, 422, signup=signup)
    return _created(conn, signup=True)
