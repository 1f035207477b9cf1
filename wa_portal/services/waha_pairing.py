"""Linking a self-hosted WAHA session by QR code, from the browser (admins).

1. ``start``: the admin gives the WAHA server's URL and API key. We generate the webhook HMAC key,
   point the session's ``config.webhooks`` at our ``/webhooks/waha`` with that key (creating the
   session, or replacing an existing one's config, which restarts it), and only then store the
   connection (``pending``). A WAHA that cannot be reached or refuses the key stores nothing.
2. ``status``: the pairing page asks every few seconds. While ``SCAN_QR_CODE`` it shows the QR code
   (``qr_png``, fetched by our server with the API key, which never reaches the browser); once
   ``WORKING`` the connection becomes ``connected`` with the linked number as its display phone.
3. ``restart`` (a FAILED or STOPPED session) and ``unlink`` (logout: the phone is unlinked and the
   session shows a new QR code).

Docs: PROVIDERS.md §3 (sessions, QR, webhooks config).
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from ..extensions import db
from ..models import Clinic, Connection, ConnectionStatus, utcnow
from ..providers.base import ProviderError
from ..providers.waha import WahaProvider
from . import connections, phones
from .clinic_settings import Validation
from .connect import route_conflict
from .webhooks import forget_routes

log = logging.getLogger(__name__)

WEBHOOK_EVENTS = ("message", "message.any", "message.ack", "message.reaction", "session.status")
SESSION_RE = re.compile(r"[A-Za-z0-9_-]{1,54}")
STATUS_WORDS = {
    "STARTING": "WAHA is starting the session…",
    "SCAN_QR_CODE": (
        "Open WhatsApp on the clinic's phone → Linked devices → Link a device, and scan this code."
    ),
    "WORKING": "Linked. Patients' messages to this number now reach the inbox.",
    "FAILED": (
        "The session failed. Restart it; WAHA then shows a new code if the phone has to be linked again."
    ),
    "STOPPED": "The session is stopped. Restart it to link the phone.",
}
NOT_A_PHONE = "This is not a phone number. Include the country code, e.g. +34 600 111 222."
REFUSED = {
    "auth": "WAHA refused the API key. Check WAHA_API_KEY on the WAHA server.",
}


class PairingError(Exception):
    """A WAHA call failed: the message is for the admin, in words."""


@dataclass(frozen=True)
class Pairing:
    status: str  # WAHA's session status, or "UNREACHABLE"
    words: str
    linked_phone: str | None = None

    @property
    def done(self) -> bool:
        return self.status == "WORKING"

    @property
    def shows_qr(self) -> bool:
        return self.status == "SCAN_QR_CODE"

    @property
    def needs_restart(self) -> bool:
        return self.status in ("FAILED", "STOPPED")


def default_session(clinic: Clinic) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", clinic.slug)[:54] or "default"


def validate(raw: Mapping[str, Any], *, country: str | None) -> Validation:
    values: dict[str, Any] = {}
    errors: dict[str, str] = {}
    base_url = str(raw.get("base_url") or "").strip()
    parts = urlsplit(base_url)
    if not base_url:
        errors["base_url"] = "Enter the WAHA server's address, e.g. http://waha:3000."
    elif parts.scheme not in ("http", "https") or not parts.netloc:
        errors["base_url"] = "Enter a web address that starts with https:// (or http://)."
    values["base_url"] = base_url.rstrip("/")
    values["api_key"] = str(raw.get("api_key") or "").strip()
    if not values["api_key"]:
        errors["api_key"] = "Enter the API key (WAHA_API_KEY on the WAHA server)."
    session = str(raw.get("session") or "").strip()
    if not SESSION_RE.fullmatch(session):
        errors["session"] = "Use 1 to 54 letters, digits, '-' or '_' for the session name."
    values["session"] = session
    phone = str(raw.get("display_phone") or "").strip()
    if phone:
        try:
            phone = phones.normalize(phone, country)
        except phones.InvalidPhone:
            errors["display_phone"] = NOT_A_PHONE
    values["display_phone"] = phone
    label = str(raw.get("label") or "").strip()
    if len(label) > 120:
        errors["label"] = "Use at most 120 characters for the name."
    values["label"] = label
    return Validation(values=values, errors=errors)


def webhook_config(webhook_url: str, hmac_key: str) -> dict[str, Any]:
    """``config`` for WAHA: our webhook, signed with the connection's key, retried on failure."""
    return {
        "webhooks": [
            {
                "url": webhook_url,
                "events": list(WEBHOOK_EVENTS),
                "hmac": {"key": hmac_key},
                "retries": {"policy": "exponential", "delaySeconds": 2, "attempts": 15},
            }
        ]
    }


def _explain(exc: ProviderError) -> str:
    if exc.kind.value == "auth":
        return REFUSED["auth"]
    if exc.kind.value == "retryable":
        return f"The WAHA server did not answer. Check its address and that it is running. ({exc.detail})"
    return f"WAHA refused: {exc.detail}"


def start(*, clinic: Clinic, values: Mapping[str, Any], base_url: str) -> Connection:
    """Configure (or create) the session on the WAHA server, then store the connection as pending."""
    settings = {
        "base_url": values["base_url"],
        "api_key": values["api_key"],
        "session": values["session"],
        "webhook_hmac_key": secrets.token_hex(32),
        "display_phone": values.get("display_phone") or "",
    }
    taken = connections.candidates_for("waha", WahaProvider.route_keys_for_settings(settings))
    resumed = next(
        (c for c in taken if c.clinic_id == clinic.id and c.status != ConnectionStatus.CONNECTED), None
    )
    if resumed is None and route_conflict("waha", settings):
        ours = any(c.clinic_id == clinic.id for c in taken)
        raise PairingError(
            "This WAHA session is already connected in the portal: "
            + ("open it from the connections page." if ours else "choose another session name.")
        )
    adapter = WahaProvider(settings)
    webhook_url = base_url.rstrip("/") + "/webhooks/waha"
    try:
        adapter.configure_session(webhook_config(webhook_url, settings["webhook_hmac_key"]))
    except ProviderError as exc:
        log.info("waha pairing for clinic %s refused: %s", clinic.id, exc.kind.value)
        raise PairingError(_explain(exc)) from exc
    if resumed is not None:  # a pairing this clinic started and never finished: carry on with it
        conn = resumed
        plain, secret = connections.split_settings("waha", settings)
        conn.config = plain
        connections.set_secrets(conn, secret)
        conn.label = values.get("label") or conn.label
    else:
        conn = connections.create_connection(
            clinic=clinic, provider="waha", settings=settings, label=values.get("label") or ""
        )
    conn.status = ConnectionStatus.PENDING
    conn.status_detail = "Waiting for the phone to be linked."
    db.session.commit()
    forget_routes()  # the new signing key applies at once here; other processes within ROUTE_TTL
    return conn


def status(conn: Connection) -> Pairing:
    """Ask WAHA how the session is; record a link (or its loss) on the connection."""
    try:
        data = connections.adapter_for(conn).get_session()  # type: ignore[attr-defined]
    except ProviderError as exc:
        return Pairing("UNREACHABLE", _explain(exc))
    state = str(data.get("status") or "UNKNOWN")
    me = data.get("me") if isinstance(data.get("me"), dict) else None
    linked = None
    if state == "WORKING" and me and me.get("id"):
        digits = str(me["id"]).split("@", 1)[0].split(":", 1)[0]
        linked = "+" + digits if digits.isdigit() else None
    _record(conn, state, linked)
    return Pairing(state, STATUS_WORDS.get(state, f"WAHA says the session is {state}."), linked)


def _record(conn: Connection, state: str, linked: str | None) -> None:
    if state == "WORKING":
        new_status, detail = ConnectionStatus.CONNECTED, "WhatsApp session: WORKING"
        if linked:
            conn.display_phone = linked
    elif conn.status == ConnectionStatus.PENDING:
        new_status, detail = ConnectionStatus.PENDING, f"Waiting for the phone to be linked ({state})."
    else:
        new_status, detail = ConnectionStatus.DEGRADED, f"WhatsApp session: {state}"
    if (conn.status, conn.status_detail) != (new_status, detail) or linked:
        conn.status, conn.status_detail = new_status, detail
        conn.health_checked_at = utcnow()
        db.session.commit()


def qr_png(conn: Connection) -> bytes | None:
    try:
        return connections.adapter_for(conn).get_qr()  # type: ignore[attr-defined,no-any-return]
    except ProviderError:
        return None


def restart(conn: Connection, *, base_url: str) -> None:
    settings = connections.settings_for(conn)
    webhook_url = base_url.rstrip("/") + "/webhooks/waha"
    try:
        connections.adapter_for(conn).configure_session(  # type: ignore[attr-defined]
            webhook_config(webhook_url, str(settings.get("webhook_hmac_key") or ""))
        )
    except ProviderError as exc:
        raise PairingError(_explain(exc)) from exc


def unlink(conn: Connection) -> None:
    try:
        connections.adapter_for(conn).logout()  # type: ignore[attr-defined]
    except ProviderError as exc:
        raise PairingError(_explain(exc)) from exc
    conn.status = ConnectionStatus.PENDING
    conn.status_detail = "The phone was unlinked. Scan the new code to link one again."
    db.session.commit()
