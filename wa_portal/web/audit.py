"""The audit trail page for admins (/settings/audit): newest first, filters, one object's history."""

from __future__ import annotations

from flask import Blueprint
from flask_login import current_user
from htmx_flask import request

from ..models import Role, zone_or_utc
from ..services import audit
from .decorators import render_page_or_fragment, roles_required

bp = Blueprint("audit", __name__, url_prefix="/settings/audit")


@bp.get("")
@roles_required(Role.ADMIN)
def index():
    clinic = current_user.clinic
    flt = audit.AuditFilter.from_args(request.args)
    page = audit.page(
        clinic_id=current_user.clinic_id,
        flt=flt,
        before=request.args.get("before", type=int),
        tz=zone_or_utc(clinic.timezone),
    )
    return render_page_or_fragment(
        "audit/index.html",
        "audit/_rows.html",
        audit_page=page,
        flt=flt,
        users=audit.users(clinic_id=current_user.clinic_id),
        actions=audit.ACTIONS,
        object_types=audit.OBJECT_TYPES,
        tz=clinic.timezone,
    )
