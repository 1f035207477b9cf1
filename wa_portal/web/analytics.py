"""Analytics page: aggregates for the clinic's staff (no patient names, numbers or text)."""

from __future__ import annotations

from flask import Blueprint, render_template
from flask_login import current_user
from htmx_flask import request

from ..services import analytics
from .decorators import roles_required

bp = Blueprint("analytics", __name__, url_prefix="/analytics")


@bp.get("/")
@roles_required("admin", "staff")
def index():
    days = analytics.period(request.args.get("days"))
    rep, computed_at = analytics.cached_report(
        clinic_id=current_user.clinic_id,
        days=days,
        tz=current_user.clinic.timezone,
        refresh=request.args.get("refresh") == "1",
    )
    return render_template(
        "analytics/index.html", rep=rep, periods=analytics.PERIODS, computed_at=computed_at
    )
