"""The audit trail: record who read or changed which record, and read it back for admins.

``record`` adds an event to the caller's session (the use case's own transaction commits it, so
the trail and the change land together or not at all). ``record_now`` commits the event alone in a
short session of its own, so it never commits, flushes or rolls back anything the caller left in
``db.session``. Neither raises: a broken audit write must not stop a reply to a patient, so it is
logged at ERROR (ids only) and the caller carries on.

Summaries name ids and fields only. As a second line of defence ``scrub`` masks anything that looks
like a phone number or an email address before it is stored.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..extensions import db
from ..models import AuditEvent, User, utcnow

log = logging.getLogger(__name__)

SYSTEM = "system"
# Pass as ``user=`` to record an event with no user even inside a signed-in request
# (an API key's action, a failed sign-in): ``None`` means "the current user, if any".
ANONYMOUS: Any = object()
SUMMARY_MAX = 300

# Actions and object types the portal writes (the admin page offers them as filters).
ACTIONS = (
    "view",
    "create",
    "update",
    "delete",
    "send",
    "assign",
    "check",
    "export",
    "login",
    "login_failed",
    "logout",
)
OBJECT_TYPES = (
    "conversation",
    "contact",
    "patient",
    "appointment",
    "message",
    "canned_reply",
    "availability",
    "settings",
    "api_key",
    "connection",
    "faq_entry",
    "delivery_log",
    "user",
)

# Eight or more digits, optionally with a leading + and the usual separators: a phone number.
_PHONE = re.compile(r"\+?\d(?:[\s().-]?\d){7,}")
_EMAIL = re.compile(r"[^\s@'\"<>]+@([A-Za-z0-9.-]+)")


def scrub(text: str) -> str:
    """Mask phone numbers and email local parts; cut to the column size."""
    text = _PHONE.sub("[number]", text or "")
    text = _EMAIL.sub(r"…@\1", text)
    return text[:SUMMARY_MAX]


def email_domain(email: str | None) -> str:
    """The part after the last @ (lowercased), or "" — never the mailbox itself."""
    _, at, domain = (email or "").strip().rpartition("@")
    return domain.lower()[:100] if at else ""


def actor_label(user: Any = None, api_key: Any = None) -> str:
    if user is not None:
        return f"{user.display_name} ({user.role})"[:200]
    if api_key is not None:
        return f"api key '{api_key.name}'"[:200]
    return SYSTEM


def _context() -> tuple[Any, Any, str | None]:
    """(signed-in user, API key, client ip) of the current request, when there is one."""
    from flask import g, has_request_context, request
    from flask_login import current_user

    if not has_request_context():
        return None, None, None
    user = current_user if current_user and current_user.is_authenticated else None
    if user is not None:
        user = user._get_current_object()  # a plain User, not the werkzeug proxy
    return user, g.get("api_key"), request.remote_addr


def build(
    action: str,
    object_type: str,
    object_id: Any = None,
    summary: str = "",
    *,
    clinic_id: int | None = None,
    user: Any = None,
    actor: str | None = None,
    ip: str | None = None,
) -> AuditEvent:
    """An unsaved event; who and where default to the current request's user or API key."""
    req_user, api_key, req_ip = _context()
    if user is ANONYMOUS:
        user = None
    elif user is None:
        user = req_user
    ip = ip or req_ip
    if clinic_id is None:
        clinic_id = user.clinic_id if user is not None else getattr(api_key, "clinic_id", None)
    if clinic_id is None:
        raise ValueError("an audit event needs a clinic")
    return AuditEvent(
        clinic_id=clinic_id,
        user_id=user.id if user is not None else None,
        actor=actor or actor_label(user, None if user is not None else api_key),
        action=action[:32],
        object_type=object_type[:32],
        object_id=None if object_id is None else str(object_id)[:64],
        summary=scrub(summary),
        ip=ip[:64] if ip else None,
        created_at=utcnow(),
    )


def record(
    action: str,
    object_type: str,
    object_id: Any = None,
    summary: str = "",
    *,
    clinic_id: int | None = None,
    user: Any = None,
    actor: str | None = None,
    ip: str | None = None,
) -> AuditEvent | None:
    """Add an event to the current session, committed with the caller's use case; never raises."""
    try:
        event = build(
            action, object_type, object_id, summary, clinic_id=clinic_id, user=user, actor=actor, ip=ip
        )
        db.session.add(event)
        return event
    except Exception:
        log.exception("audit: could not record %s %s %s", action, object_type, object_id)
        return None


def record_now(
    action: str,
    object_type: str,
    object_id: Any = None,
    summary: str = "",
    *,
    clinic_id: int | None = None,
    user: Any = None,
    actor: str | None = None,
    ip: str | None = None,
) -> int | None:
    """Commit one event at once in a session of its own; returns its id, or None when it failed."""
    try:
        event = build(
            action, object_type, object_id, summary, clinic_id=clinic_id, user=user, actor=actor, ip=ip
        )
        # A separate session on its own pooled connection: whatever the caller left pending in
        # db.session (loaded objects, autoflush candidates, an open transaction) is neither
        # committed nor rolled back here. expire_on_commit=False: nothing is reloaded afterwards.
        with Session(db.engine, expire_on_commit=False) as session:
            session.add(event)
            session.commit()
            return event.id
    except Exception:
        log.exception("audit: could not record %s %s %s", action, object_type, object_id)
        return None


# --- reading (the admin page) ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AuditFilter:
    user_id: int | None = None
    action: str = ""
    object_type: str = ""
    object_id: str = ""
    date_from: date | None = None
    date_to: date | None = None

    @classmethod
    def from_args(cls, args: Any) -> AuditFilter:
        def day(name: str) -> date | None:
            try:
                return date.fromisoformat(args.get(name, ""))
            except ValueError:
                return None

        user = args.get("user", "")
        return cls(
            user_id=int(user) if user.isdigit() else None,
            action=args.get("action", "").strip()[:32],
            object_type=args.get("object_type", "").strip()[:32],
            object_id=args.get("object_id", "").strip()[:64],
            date_from=day("from"),
            date_to=day("to"),
        )

    def query_args(self) -> dict[str, str]:
        """The filter as URL arguments (for "older" links), empty ones left out."""
        raw = {
            "user": str(self.user_id or ""),
            "action": self.action,
            "object_type": self.object_type,
            "object_id": self.object_id,
            "from": self.date_from.isoformat() if self.date_from else "",
            "to": self.date_to.isoformat() if self.date_to else "",
        }
        return {k: v for k, v in raw.items() if v}


@dataclass(frozen=True, slots=True)
class AuditPage:
    rows: list[AuditEvent]
    next_before: int | None


def page(
    *, clinic_id: int, flt: AuditFilter, before: int | None = None, tz: Any = UTC, limit: int = 50
) -> AuditPage:
    """One page of the clinic's trail, newest first; ``before`` is the last id of the previous page."""
    stmt = select(AuditEvent).where(AuditEvent.clinic_id == clinic_id)
    if before:
        stmt = stmt.where(AuditEvent.id < before)
    if flt.user_id:
        stmt = stmt.where(AuditEvent.user_id == flt.user_id)
    if flt.action:
        stmt = stmt.where(AuditEvent.action == flt.action)
    if flt.object_type:
        stmt = stmt.where(AuditEvent.object_type == flt.object_type)
    if flt.object_id:
        stmt = stmt.where(AuditEvent.object_id == flt.object_id)
    # Dates are the clinic's calendar days, "to" inclusive.
    if flt.date_from:
        stmt = stmt.where(AuditEvent.created_at >= datetime.combine(flt.date_from, time(), tzinfo=tz))
    if flt.date_to:
        end = datetime.combine(flt.date_to + timedelta(days=1), time(), tzinfo=tz)
        stmt = stmt.where(AuditEvent.created_at < end)
    rows = list(db.session.scalars(stmt.order_by(AuditEvent.id.desc()).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    return AuditPage(rows=rows, next_before=rows[-1].id if more else None)


def users(*, clinic_id: int) -> list[User]:
    """The clinic's accounts, for the "who" filter."""
    return list(db.session.scalars(select(User).where(User.clinic_id == clinic_id).order_by(User.name)))
