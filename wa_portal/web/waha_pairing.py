"""Link a WAHA session by QR code (admins): the form, the pairing page, its live status and the QR image.

The QR code is fetched by the server with the connection's API key and served from our own origin,
so the key never reaches the browser; the status fragment polls itself every 3 s until the phone
is linked. Every query is scoped to the signed-in admin's clinic.
"""

from __future__ import annotations

import time

from flask import Blueprint, Response, abort, redirect, render_template, request, url_for
from flask_login import current_user

from ..models import Role
from ..services import connections, waha_pairing
from .decorators import public_base_url, render_page_or_fragment, roles_required

bp = Blueprint("waha_pair", __name__, url_prefix="/settings/connections")

FIELDS = ("label", "base_url", "api_key", "session", "display_phone")


def _waha_connection(connection_id: int):  # type: ignore[no-untyped-def]
    conn = connections.get_for_clinic(clinic_id=current_user.clinic_id, connection_id=connection_id)
    if conn.provider != "waha":
        abort(404)
    return conn


@bp.get("/new/waha")
@roles_required(Role.ADMIN)
def new():
    values = {"session": waha_pairing.default_session(current_user.clinic), "base_url": "http://"}
    return render_template("settings/waha_new.html", values=values, errors={})


@bp.post("/new/waha")
@roles_required(Role.ADMIN)
def create():
    raw = {name: request.form.get(name, "") for name in FIELDS}
    result = waha_pairing.validate(raw, country=current_user.clinic.country)
    shown = {k: v for k, v in raw.items() if k != "api_key"}  # a secret is never rendered back
    if not result.ok:
        return render_template("settings/waha_new.html", values=shown, errors=result.errors), 422
    try:
        base_url = public_base_url()
        conn = waha_pairing.start(clinic=current_user.clinic, values=result.values, base_url=base_url)
    except waha_pairing.PairingError as exc:
        return render_template("settings/waha_new.html", values=shown, errors={}, form_error=str(exc)), 422
    return redirect(url_for("waha_pair.pair", connection_id=conn.id))  # the trail reads the id from here


@bp.get("/<int:connection_id>/waha")
@roles_required(Role.ADMIN)
def pair(connection_id: int):
    conn = _waha_connection(connection_id)
    return _status_page(conn)


def _status_page(conn, error: str | None = None):  # type: ignore[no-untyped-def]
    """The pairing page, or (htmx) its status section only; 422 with the reason when an action failed."""
    resp = render_page_or_fragment(
        "settings/waha_pair.html",
        "settings/_waha_status.html",
        conn=conn,
        state=waha_pairing.status(conn),
        action_error=error,
        qr_version=time.time_ns(),
    )
    if error:
        resp.status_code = 422
    return resp


@bp.get("/<int:connection_id>/waha/qr.png")
@roles_required(Role.ADMIN)
def qr(connection_id: int):
    conn = _waha_connection(connection_id)
    png = waha_pairing.qr_png(conn)
    if png is None:
        abort(404)
    return Response(png, mimetype="image/png", headers={"Cache-Control": "no-store"})


@bp.post("/<int:connection_id>/waha/restart")
@roles_required(Role.ADMIN)
def restart(connection_id: int):
    conn = _waha_connection(connection_id)
    try:
        waha_pairing.restart(conn, base_url=public_base_url())
    except waha_pairing.PairingError as exc:
        return _status_page(conn, str(exc))
    return _status_page(conn)


@bp.post("/<int:connection_id>/waha/unlink")
@roles_required(Role.ADMIN)
def unlink(connection_id: int):
    conn = _waha_connection(connection_id)
    try:
        waha_pairing.unlink(conn)
    except waha_pairing.PairingError as exc:
        return _status_page(conn, str(exc))
    return _status_page(conn)
