"""Delivery pages: the notification log (CSV export), failed deliveries with Retry, delivery health."""

from __future__ import annotations

from flask import Blueprint, Response, flash, redirect, stream_with_context, url_for
from flask_login import current_user
from htmx_flask import request

from ..models import utcnow
from ..services import delivery, delivery_log
from .decorators import render_page_or_fragment, roles_required

bp = Blueprint("deliveries", __name__, url_prefix="/deliveries")

ROLES = ("admin", "staff")


@bp.get("/")
@roles_required(*ROLES)
def index():
    return redirect(url_for("deliveries.log"))


@bp.get("/log")
@roles_required(*ROLES)
def log():
    flt = delivery_log.LogFilter.from_args(request.args)
    page = delivery_log.log_page(
        clinic_id=current_user.clinic_id, flt=flt, before=request.args.get("before", type=int)
    )
    return render_page_or_fragment(
        "deliveries/log.html",
        "deliveries/_log_rows.html",
        log_page=page,
        flt=flt,
        statuses=delivery_log.STATUSES,
        channels=delivery_log.CHANNELS,
        tz=current_user.clinic.timezone,
    )


@bp.get("/log.csv")
@roles_required(*ROLES)
def log_csv():
    flt = delivery_log.LogFilter.from_args(request.args)
    body = delivery_log.iter_csv(clinic_id=current_user.clinic_id, flt=flt)
    resp = Response(stream_with_context(body), mimetype="text/csv")
    resp.headers["Content-Disposition"] = (
        f'attachment; filename="notification-log-{utcnow().date().isoformat()}.csv"'
    )
    return resp


@bp.get("/failed")
@roles_required(*ROLES)
def failed():
    rows, next_before = delivery_log.failed(
        clinic_id=current_user.clinic_id, before=request.args.get("before", type=int)
    )
    return render_page_or_fragment(
        "deliveries/failed.html",
        "deliveries/_failed_rows.html",
        rows=rows,
        next_before=next_before,
        tz=current_user.clinic.timezone,
    )


@bp.post("/messages/<int:message_id>/retry")
@roles_required(*ROLES)
def retry(message_id: int):
    try:
        delivery.retry(clinic_id=current_user.clinic_id, message_id=message_id, user_id=current_user.id)
        flash("Sending again. The new attempt appears in the history.", "success")
    except delivery.RetryError as exc:
        flash(str(exc), "error")
    if request.htmx:
        resp = Response(status=204)
        resp.headers["HX-Redirect"] = url_for("deliveries.failed")
        return resp
    return redirect(url_for("deliveries.failed"))


@bp.get("/health")
@roles_required(*ROLES)
def health():
    rows = delivery_log.health(clinic_id=current_user.clinic_id)
    return render_page_or_fragment(
        "deliveries/health.html",
        "deliveries/_health.html",
        rows=rows,
        redis_ok=delivery_log.redis_ok(),
        tz=current_user.clinic.timezone,
    )
