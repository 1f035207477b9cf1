"""Audit every read and change of patient data without touching the views: one table, one hook.

``AUDITED`` maps ``(endpoint, method)`` — the names in ``app.url_map`` — to what the request means
for the trail. After a successful response (2xx/3xx) from a signed-in user or an API key, the hook
writes one row. A view that answers 2xx/3xx after flashing an "error" (the non-htmx way of saying
"that did not work") is treated as failed and not recorded.

Transactions: the row is committed by ``audit.record_now`` in a short session of its own, not in
``db.session``. By the time ``after_request`` runs the view has normally committed through its
service, but it may also have left loaded or modified objects there (or a transaction open): a
commit on ``db.session`` here would silently commit them, a rollback would discard them for the
teardown code. A separate ``Session(db.engine)`` touches neither; it takes one pooled connection
for about a millisecond. On SQLite (WAL) that second connection never waits on readers.

Limits, by design: what a page fetched as a partial refresh (``?fragment=…`` of an open
conversation, live updates) is not recorded again; failures raise no error to the user (logged at
ERROR by the service). tests/audit/test_coverage.py fails when a table entry names an endpoint that
does not exist, or when a write endpoint of an audited blueprint is in neither table.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from flask import Flask, Request, Response, current_app, g, request, session
from flask_login import current_user
from sqlalchemy import func, select

from ..extensions import db
from ..models import User
from ..services import audit

log = logging.getLogger(__name__)

# Blueprints whose write endpoints must each be audited or explicitly ignored (see the tests).
AUDITED_BLUEPRINTS = (
    "inbox",
    "appointments",
    "deliveries",
    "settings",
    "connect",
    "waha_pair",
    "api",
    "audit",
    "broadcasts",
    "assistant",
)
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@dataclass(frozen=True, slots=True)
class Rule:
    """What one endpoint means for the trail.

    ``action`` is a verb, or a function of the request returning one (None: record nothing).
    The object id comes from a view argument (``id_arg``), a query/form argument (``id_param``)
    or, for creates, a view argument of the URL the response points to (``id_from_location``).
    ``summary`` returns ids and field names only — never values a patient typed or a phone number.
    ``skip_if_param``: no row when this query argument is set (partial refreshes would flood).
    """

    action: str | Callable[[Request], str | None]
    object_type: str
    id_arg: str | None = None
    id_param: str | None = None
    id_from_location: str | None = None
    summary: str | Callable[[Request], str] = ""
    skip_if_param: str | None = None  # a partial refresh of a page already recorded


def _fields(names: Any) -> str:
    return ", ".join(sorted(str(n)[:32] for n in names))


def _filters(req: Request) -> str:
    used = [k for k in ("status", "type", "channel", "from", "to") if req.args.get(k)]
    return f"filters: {_fields(used)}" if used else "no filters"


def _reply_action(req: Request) -> str:
    return "create" if req.form.get("mode") == "note" else "send"


def _reply_summary(req: Request) -> str:
    mode = req.form.get("mode", "reply")
    return {"note": "internal note", "template": "template message"}.get(mode, "reply")


CONVERSATION_ACTIONS = {"unassign", "close", "reopen", "bot"}


def _conversation_action(req: Request) -> str:
    return "assign" if req.form.get("action") == "assign" else "update"


def _conversation_summary(req: Request) -> str:
    action = req.form.get("action", "")
    if action == "assign":
        assignee = req.form.get("assignee_id", "")
        return f"assignee user {assignee}" if assignee.isdigit() else "assigned to self"
    return f"status: {action}" if action in CONVERSATION_ACTIONS else "status change"


def _outcome_summary(req: Request) -> str:
    status = req.form.get("status", "")
    return f"status: {status}" if status in {"completed", "no_show"} else "outcome"


API_PATCHABLE = {"starts_at", "duration_minutes", "status"}
API_STATUSES = {"cancelled", "confirmed", "completed", "no_show"}


def _api_patch_summary(req: Request) -> str:
    data = req.get_json(silent=True)
    if not isinstance(data, dict):
        return "update"
    status = data.get("status")
    if status in API_STATUSES:
        return f"status: {status}"
    return f"fields: {_fields(k for k in data if k in API_PATCHABLE)}"


def _login_action(req: Request) -> str | None:
    if g.get("_audit_user") is not None:
        return None  # already signed in: the view only redirects
    return "login" if current_user.is_authenticated else "login_failed"


# (endpoint, method) -> Rule. The one place that says what is audited.
AUDITED: dict[tuple[str, str], Rule] = {
    # --- sign in / out
    ("auth.login", "POST"): Rule(_login_action, "user"),
    ("auth.logout", "POST"): Rule("logout", "user"),
    # --- inbox
    ("inbox.conversation", "GET"): Rule(
        "view", "conversation", id_arg="conversation_id", skip_if_param="fragment"
    ),
    ("inbox.reply", "POST"): Rule(
        _reply_action, "conversation", id_arg="conversation_id", summary=_reply_summary
    ),
    ("inbox.attach", "POST"): Rule("send", "conversation", id_arg="conversation_id", summary="attachment"),
    ("inbox.act", "POST"): Rule(
        _conversation_action, "conversation", id_arg="conversation_id", summary=_conversation_summary
    ),
    ("inbox.contact_notes", "POST"): Rule("update", "contact", id_arg="contact_id", summary="notes"),
    ("inbox.retry_media", "POST"): Rule(
        "update", "message", id_arg="message_id", summary="media download retried"
    ),
    ("inbox.media", "GET"): Rule("view", "message", id_arg="message_id", summary="media file"),
    ("inbox.canned_add", "POST"): Rule("create", "canned_reply"),
    ("inbox.canned_delete", "POST"): Rule("delete", "canned_reply", id_arg="canned_id"),
    # --- appointments (pages)
    ("appointments.detail", "GET"): Rule("view", "appointment", id_arg="appointment_id"),
    ("appointments.create", "POST"): Rule(
        "create", "appointment", id_from_location="appointment_id", summary="booked from the page"
    ),
    ("appointments.confirm", "POST"): Rule(
        "update", "appointment", id_arg="appointment_id", summary="status: confirmed"
    ),
    ("appointments.cancel", "POST"): Rule(
        "update", "appointment", id_arg="appointment_id", summary="status: cancelled"
    ),
    ("appointments.reschedule", "POST"): Rule(
        "update", "appointment", id_arg="appointment_id", summary="rescheduled: starts_at"
    ),
    ("appointments.outcome", "POST"): Rule(
        "update", "appointment", id_arg="appointment_id", summary=_outcome_summary
    ),
    ("appointments.add_availability", "POST"): Rule("create", "availability"),
    ("appointments.delete_availability", "POST"): Rule("delete", "availability", id_arg="slot_id"),
    ("appointments.save_settings", "POST"): Rule(
        "update", "settings", summary="appointments: offsets, quiet_start, quiet_end, slot_minutes"
    ),
    ("appointments.create_api_key", "POST"): Rule("create", "api_key"),
    ("appointments.revoke_api_key", "POST"): Rule("update", "api_key", id_arg="key_id", summary="revoked"),
    # --- deliveries
    ("deliveries.log", "GET"): Rule("view", "delivery_log", summary=_filters),
    ("deliveries.log_csv", "GET"): Rule("export", "delivery_log", summary=lambda r: f"CSV; {_filters(r)}"),
    ("deliveries.failed", "GET"): Rule("view", "delivery_log", summary="failed deliveries"),
    ("deliveries.retry", "POST"): Rule("send", "message", id_arg="message_id", summary="delivery retried"),
    # --- settings
    ("settings.save_clinic", "POST"): Rule(
        "update", "settings", summary="clinic: name, timezone, locale, country"
    ),
    ("settings.save_messaging", "POST"): Rule(
        "update",
        "settings",
        summary="messaging: phi_policy, phi_terms, fallback_chain, critical_timeout_minutes, "
        "max_attempts, emergency_to_opted_out",
    ),
    ("settings.check_connection", "POST"): Rule("check", "connection", id_arg="connection_id"),
    # --- connecting a number (web/connect.py): names only, never a setting's value
    ("connect.create", "POST"): Rule(
        "create",
        "connection",
        id_from_location="connection_id",
        summary=lambda r: f"provider: {(r.view_args or {}).get('provider', '')}",
    ),
    ("connect.meta_signup", "POST"): Rule(
        "create", "connection", id_from_location="connection_id", summary="provider: meta (embedded signup)"
    ),
    ("connect.update", "POST"): Rule(
        "update", "connection", id_arg="connection_id", summary="settings edited"
    ),
    ("connect.deactivate", "POST"): Rule(
        "update", "connection", id_arg="connection_id", summary="deactivated"
    ),
    ("connect.reactivate", "POST"): Rule(
        "update", "connection", id_arg="connection_id", summary="reactivated"
    ),
    ("waha_pair.create", "POST"): Rule(
        "create", "connection", id_from_location="connection_id", summary="provider: waha (QR code)"
    ),
    ("waha_pair.restart", "POST"): Rule(
        "update", "connection", id_arg="connection_id", summary="WAHA session restarted"
    ),
    ("waha_pair.unlink", "POST"): Rule(
        "update", "connection", id_arg="connection_id", summary="phone unlinked"
    ),
    # --- the assistant's settings (its FAQ answers are clinic facts; changed like any setting)
    ("assistant.save_switches", "POST"): Rule(
        "update", "settings", summary="assistant: assistant_enabled, assistant_booking"
    ),
    ("assistant.add_entry", "POST"): Rule("create", "faq_entry"),
    ("assistant.update_entry", "POST"): Rule(
        "update", "faq_entry", id_arg="entry_id", summary="question, keywords, answer, enabled"
    ),
    ("assistant.toggle_entry", "POST"): Rule(
        "update", "faq_entry", id_arg="entry_id", summary=lambda r: f"enabled: {r.form.get('enabled') == '1'}"
    ),
    ("assistant.delete_entry", "POST"): Rule("delete", "faq_entry", id_arg="entry_id"),
    # --- broadcasts (the detail page polls itself with HX-Request while sending: opened once = one row)
    ("broadcasts.send", "POST"): Rule(
        "send",
        "broadcast",
        id_from_location="broadcast_id",
        summary=lambda r: f"kind: {(r.form.get('kind') or '')[:16]}",
    ),
    ("broadcasts.detail", "GET"): Rule(
        lambda r: None if r.headers.get("HX-Request") else "view", "broadcast", id_arg="broadcast_id"
    ),
    # --- JSON API (the actor is the API key)
    ("api.create_appointment", "POST"): Rule(
        "create", "appointment", id_from_location="appointment_id", summary="booked through the API"
    ),
    ("api.get_appointment", "GET"): Rule("view", "appointment", id_arg="appointment_id"),
    ("api.update_appointment", "PATCH"): Rule(
        "update", "appointment", id_arg="appointment_id", summary=_api_patch_summary
    ),
    ("api.list_notifications", "GET"): Rule(
        "view", "appointment", id_param="appointment_id", summary="notifications"
    ),
}

# Write endpoints of the audited blueprints that deliberately leave no row, and why.
IGNORED: dict[tuple[str, str], str] = {
    ("inbox.typing", "POST"): "typing indicator: presence in Redis for a few seconds, no data changes",
    ("broadcasts.review", "POST"): "the confirmation step: shows counts, sends and stores nothing",
    ("settings.index", "POST"): "only redirects to the clinic page; changes nothing",
}


def register(app: Flask) -> None:
    """Install the audit hook on the app (blueprint-independent)."""
    app.before_request(_remember_user)
    app.after_request(_after_request)


def _remember_user() -> None:
    # logout_user() empties current_user before after_request runs: keep who it was. Always
    # (re)set: ``g`` outlives the request when an app context was already pushed (tests, CLI).
    g._audit_user = None
    if (request.endpoint, request.method) in AUDITED and current_user.is_authenticated:
        g._audit_user = current_user._get_current_object()


def _after_request(resp: Response) -> Response:
    key = (request.endpoint or "", request.method)
    rule = AUDITED.get(key)
    if rule is None:
        return resp
    if not 200 <= resp.status_code < 400:
        return resp
    if rule.skip_if_param and request.args.get(rule.skip_if_param):
        return resp
    try:
        _audit(rule, resp)
    except Exception:  # the response is built; nothing in the trail may break it
        log.exception("audit: hook failed for %s", key[0])
    return resp


def _flashed_error() -> bool:
    return any(cat == "error" for cat, _ in session.get("_flashes", ()))


def _audit(rule: Rule, resp: Response) -> None:
    action = rule.action(request) if callable(rule.action) else rule.action
    if action is None:
        return
    if action == "login_failed":
        _login_failed()
        return
    if request.blueprint != "api" and _flashed_error():  # the API has no session (nor flashes)
        return
    api_key = g.get("api_key")
    user = None
    if request.blueprint != "api" or api_key is None:
        user = current_user._get_current_object() if current_user.is_authenticated else g.get("_audit_user")
        api_key = None
    if user is None and api_key is None:
        return
    summary = rule.summary(request) if callable(rule.summary) else rule.summary
    audit.record_now(
        action,
        rule.object_type,
        _object_id(rule, resp),
        summary,
        clinic_id=user.clinic_id if user is not None else api_key.clinic_id,
        user=user if user is not None else audit.ANONYMOUS,
        actor=audit.actor_label(user, api_key),
    )


def _object_id(rule: Rule, resp: Response) -> str | None:
    if rule.id_arg:
        value = (request.view_args or {}).get(rule.id_arg)
        return None if value is None else str(value)
    if rule.id_param:
        value = request.values.get(rule.id_param, "")
        return value if value.isdigit() else None
    if rule.id_from_location and resp.location:
        adapter = current_app.url_map.bind("")
        try:
            _, args = adapter.match(urlsplit(resp.location).path, method="GET")
        except Exception:
            return None
        value = args.get(rule.id_from_location)
        return None if value is None else str(value)
    return None


def _login_failed() -> None:
    """A failed sign-in, filed under the clinic of the account it named; the email's domain only."""
    email = (request.form.get("email") or "").strip().lower()
    domain = audit.email_domain(email)
    account = (
        db.session.scalar(select(User).where(func.lower(User.email) == email).limit(1)) if email else None
    )
    if account is None:
        # No account, so no clinic to file it under: a log line (no address) is all there is.
        log.warning("audit: failed sign-in for an unknown account (domain %r)", domain)
        return
    audit.record_now(
        "login_failed",
        "user",
        account.id,
        f"email domain: {domain}",
        clinic_id=account.clinic_id,
        user=audit.ANONYMOUS,
        actor="anonymous",
    )
