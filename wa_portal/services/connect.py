"""Connecting a provider from the browser: the form each provider needs, its validation, create / edit /
(de)activate, and Meta's embedded signup (code → token → webhook subscription → number registration).

The form fields are the adapter's own ``settings_schema`` minus what ``connections.GENERATED`` makes up
(webhook path tokens, sandbox ids): the keys ``flask wa add-connection`` takes (CONTRACT.md). Secrets go
through ``connections.split_settings`` / ``set_secrets`` like the CLI's, so they are stored encrypted; they
are never logged (only setting *names* are) and never put back into a form.
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from ..extensions import db
from ..models import Clinic, Connection
from ..providers import meta
from ..providers.base import ProviderError, SettingField, get_provider_class
from . import connections, phones, webhooks
from .clinic_settings import Validation

log = logging.getLogger(__name__)

# Providers with a form here; WAHA has its own QR flow (web/connect_waha.py).
FORM_PROVIDERS = ("meta", "dialog360", "twilio", "chatwoot", "ses", "sandbox")
# Generated when left blank, but asked anyway: the admin types the verify token into Meta's dashboard too.
ASKED_ANYWAY = frozenset({"verify_token"})
URL_SETTINGS = frozenset({"base_url", "endpoint_url"})
PHONE_SETTINGS = frozenset({"display_phone", "whatsapp_from"})
DIGIT_SETTINGS = frozenset({"phone_number_id", "waba_id", "account_id", "inbox_id"})
MAX_LABEL = 120  # Connection.label
MAX_VALUE = 500
PIN_RE = re.compile(r"\d{6}")
EMAIL_RE = re.compile(r"[^@\s<>]+@[^@\s<>]+\.[^@\s<>]+")
ALPHA_SENDER_RE = re.compile(r"[A-Za-z0-9 ]{1,11}")  # Twilio alphanumeric sender id


class ConnectError(ValueError):
    """A change the admin asked for that cannot be made; ``str()`` is the sentence to show."""


class SignupError(Exception):
    """Meta's embedded signup stopped at ``step``: ``message`` says what to do, ``detail`` what Meta said."""

    def __init__(self, message: str, *, detail: str = "", step: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail
        self.step = step


# --- the form ------------------------------------------------------------------------------------


def form_fields(provider: str) -> tuple[SettingField, ...]:
    """The settings the form asks for, in the adapter's order (the add-connection keys)."""
    generated = set(connections.GENERATED.get(provider, {})) - ASKED_ANYWAY
    return tuple(f for f in get_provider_class(provider).settings_schema if f.name not in generated)


def display_name(provider: str) -> str:
    return get_provider_class(provider).display_name


def edit_values(conn: Connection) -> dict[str, Any]:
    """What the edit form starts with: the label and the plain settings (secret ones stay blank)."""
    config = conn.config or {}
    values: dict[str, Any] = {"label": conn.label}
    for f in form_fields(conn.provider):
        if not f.secret:
            values[f.name] = config.get(f.name, "")
    return values


def secret_names_set(conn: Connection) -> set[str]:
    """Which secret settings have a value (the edit form says "set, leave blank to keep")."""
    return {k for k, v in connections.get_secrets(conn).items() if v}


def validate(
    provider: str,
    raw: Mapping[str, Any],
    *,
    country: str | None = None,
    kept_secrets: set[str] | frozenset[str] = frozenset(),
) -> Validation:
    """Raw form values in; cleaned settings (plus ``label``) or errors by field, in words.

    ``kept_secrets`` (editing): secret settings that already have a value, so a blank one keeps it.
    Blank plain settings are returned as "" so an edit can clear them.
    """
    values: dict[str, Any] = {}
    errors: dict[str, str] = {}
    label = str(raw.get("label") or "").strip()
    if len(label) > MAX_LABEL:
        errors["label"] = f"Use at most {MAX_LABEL} characters for the name."
    values["label"] = label
    for f in form_fields(provider):
        value = str(raw.get(f.name) or "").strip()
        if not value:
            if f.required and not (f.secret and f.name in kept_secrets):
                errors[f.name] = f"Enter the {_lower_first(f.label)}."
            if not f.secret:
                values[f.name] = ""
            continue
        problem, cleaned = _check(f.name, value, country)
        if problem:
            errors[f.name] = problem
        else:
            values[f.name] = cleaned
    if provider == "twilio" and not errors:
        senders = ("whatsapp_from", "sms_from", "messaging_service_sid")
        if not any(values.get(s) for s in senders):
            errors["whatsapp_from"] = "Enter a WhatsApp sender, an SMS sender or a Messaging Service SID."
    return Validation(values=values, errors=errors)


def _lower_first(label: str) -> str:
    """ "Access token" → "access token", but "API key" stays."""
    return label[0].lower() + label[1:] if label[1:2].islower() else label


def _check(name: str, value: str, country: str | None) -> tuple[str, str]:
    """(problem in words or "", cleaned value) for one non-blank setting."""
    if len(value) > MAX_VALUE:
        return f"Use at most {MAX_VALUE} characters.", value
    if name in URL_SETTINGS:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            return "Enter a web address that starts with https:// (or http://).", value
        return "", value.rstrip("/")
    if name in PHONE_SETTINGS:
        return _phone(value, country)
    if name == "sms_from":
        if ALPHA_SENDER_RE.fullmatch(value) and any(ch.isalpha() for ch in value):
            return "", value  # an alphanumeric sender id ("SUNRISE")
        return _phone(value, country)
    if name in DIGIT_SETTINGS and not value.isdigit():
        return "Enter the number only (digits, no spaces).", value
    if name == "account_sid" and not value.startswith("AC"):
        return "A Twilio Account SID starts with AC.", value
    if name == "messaging_service_sid" and not value.startswith("MG"):
        return "A Messaging Service SID starts with MG.", value
    if name == "from_email" and not EMAIL_RE.fullmatch(value):
        return "Enter an email address such as reception@clinic.example.", value
    return "", value


def _phone(value: str, country: str | None) -> tuple[str, str]:
    try:
        return "", phones.normalize(value, country)
    except phones.InvalidPhone:
        return "This is not a phone number. Include the country code, e.g. +34 600 111 222.", value


def route_conflict(provider: str, settings: Mapping[str, Any], *, exclude_id: int | None = None) -> str:
    """A sentence when another active connection already receives webhooks for these settings, else "".

    A Meta WABA id may be shared by several numbers, so only the number-level keys count.
    """
    keys = [
        k for k in get_provider_class(provider).route_keys_for_settings(settings) if not k.startswith("waba:")
    ]
    taken = [c for c in connections.candidates_for(provider, keys) if c.id != exclude_id]
    if not taken:
        return ""
    return "This number or account is already connected in the portal; deactivate that connection first."


# --- create / edit / (de)activate -------------------------------------------------------------------


def create(*, clinic_id: int, user_id: int, provider: str, values: Mapping[str, Any]) -> Connection:
    """Store a validated connection for the clinic and run its health check once."""
    settings = {k: v for k, v in values.items() if k != "label" and v not in (None, "")}
    conflict = route_conflict(provider, settings)
    if conflict:
        raise ConnectError(conflict)
    clinic = db.session.get(Clinic, clinic_id)
    if clinic is None:
        raise ConnectError("This clinic does not exist.")
    try:
        conn = connections.create_connection(
            clinic=clinic, provider=provider, settings=settings, label=str(values.get("label") or "")
        )
    except connections.ConnectionSettingsError as exc:
        db.session.rollback()
        raise ConnectError(str(exc)) from None
    log.info(
        "connection %s (%s) added by user %s in clinic %s; settings: %s",
        conn.id,
        provider,
        user_id,
        clinic_id,
        ", ".join(sorted(settings)),
    )
    connections.check_health(conn.id)
    return conn


def update(*, clinic_id: int, user_id: int, connection_id: int, values: Mapping[str, Any]) -> Connection:
    """Change a connection's settings (blank secrets keep theirs) and check it again if it is active."""
    conn = connections.get_for_clinic(clinic_id=clinic_id, connection_id=connection_id)
    schema = {f.name for f in get_provider_class(conn.provider).settings_schema}
    asked = {f.name for f in form_fields(conn.provider)}
    current = {k: v for k, v in connections.settings_for(conn).items() if k in schema}
    # Settings the form does not show (generated tokens) stay; shown ones take the form's value.
    merged = {k: v for k, v in current.items() if k not in asked or k not in values}
    merged.update({k: v for k, v in values.items() if k in asked and v not in (None, "")})
    for name, make in connections.GENERATED.get(conn.provider, {}).items():
        if not merged.get(name):  # made before the provider needed it (an SES sender before feedback)
            merged[name] = make()
    changed = sorted(k for k in asked if merged.get(k) != current.get(k))
    if conn.active:
        conflict = route_conflict(conn.provider, merged, exclude_id=conn.id)
        if conflict:
            raise ConnectError(conflict)
    try:
        plain, secret = connections.split_settings(conn.provider, merged)
    except connections.ConnectionSettingsError as exc:
        raise ConnectError(str(exc)) from None
    conn.label = str(values.get("label") or "") or get_provider_class(conn.provider).display_name
    conn.config = plain
    conn.display_phone = _display_phone(plain)
    connections.set_secrets(conn, secret)
    connections.refresh_routes(conn)
    db.session.commit()
    webhooks.forget_routes()  # this process at once; the others within webhooks.ROUTE_TTL
    # Names only: the values of secret settings never reach a log.
    log.info("connection %s edited by user %s; changed: %s", conn.id, user_id, ", ".join(changed) or "label")
    if conn.active:
        connections.check_health(conn.id)
    return conn


def _display_phone(plain: Mapping[str, Any]) -> str | None:
    # As connections.create_connection sets it.
    return plain.get("display_phone") or plain.get("whatsapp_from") or plain.get("from_email")


def set_active(*, clinic_id: int, user_id: int, connection_id: int, active: bool) -> Connection:
    """Deactivate (webhooks for it are refused, nothing is sent through it) or reactivate a connection."""
    conn = connections.get_for_clinic(clinic_id=clinic_id, connection_id=connection_id)
    if active and not conn.active:
        conflict = route_conflict(conn.provider, connections.settings_for(conn), exclude_id=conn.id)
        if conflict:
            raise ConnectError(conflict)
    conn.active = active
    db.session.commit()
    webhooks.forget_routes()  # this process at once; the others within webhooks.ROUTE_TTL
    log.info("connection %s %s by user %s", conn.id, "reactivated" if active else "deactivated", user_id)
    if active:
        connections.check_health(conn.id)
    return conn


# --- Meta embedded signup ---------------------------------------------------------------------------
# Docs: https://developers.facebook.com/docs/whatsapp/embedded-signup/onboarding-customers-as-a-tech-provider

STEP_MESSAGES = {
    "exchange": "Facebook's sign-in could not be completed (its code works once and only for a few "
    "minutes). Nothing was saved: click “Connect with Facebook” and go through the window again.",
    "subscribe": "Meta did not let the portal receive this number's messages. Nothing was saved: try "
    "again, and check in Meta Business Suite that the business finished the setup.",
    "register": "Meta could not register the number. Check the 6-digit two-step verification PIN (set "
    "in WhatsApp Manager for this number), then click “Connect with Facebook” again. Nothing was saved.",
}
APP_REFUSED = (
    "Meta refused the portal's own app settings (META_APP_ID / META_APP_SECRET). Nothing was saved: ask "
    "whoever runs the server to check them."
)
UNAVAILABLE = "Meta is not answering right now. Nothing was saved: please try again in a few minutes."


def meta_signup_configured(config: Mapping[str, Any]) -> bool:
    return all(config.get(k) for k in ("META_APP_ID", "META_APP_SECRET", "META_CONFIG_ID"))


def graph_version(base_url: str) -> str:
    """The Graph API version the JS SDK is initialised with: the last path part of the base URL."""
    last = urlsplit(base_url).path.rstrip("/").rsplit("/", 1)[-1]
    return last if re.fullmatch(r"v\d+\.\d+", last) else "v23.0"


def validate_signup(raw: Mapping[str, Any]) -> Validation:
    """What the page posts after the Facebook window: the code, the ids from its message, the PIN."""
    values = {
        k: str(raw.get(k) or "").strip() for k in ("code", "phone_number_id", "waba_id", "pin", "label")
    }
    errors: dict[str, str] = {}
    if not values["code"] or not values["phone_number_id"] or not values["waba_id"]:
        errors["signup"] = (
            "The Facebook window did not finish. Click “Connect with Facebook” and complete every step."
        )
    elif not (values["phone_number_id"].isdigit() and values["waba_id"].isdigit()):
        errors["signup"] = "Facebook sent ids the portal cannot read. Click “Connect with Facebook” again."
    if not PIN_RE.fullmatch(values["pin"]):
        errors["pin"] = "Enter the 6-digit two-step verification PIN of the number."
    if len(values["label"]) > MAX_LABEL:
        errors["label"] = f"Use at most {MAX_LABEL} characters for the name."
    return Validation(values=values, errors=errors)


def meta_signup(
    *,
    clinic_id: int,
    user_id: int,
    values: Mapping[str, str],
    app_id: str,
    app_secret: str,
    graph_url: str,
) -> Connection:
    """Finish an embedded signup: every Meta call first, then one commit; a failed step stores nothing.

    The platform app's webhook (set once in its App Dashboard, pointing at /webhooks/meta) receives the
    customer's events once the WABA is subscribed, signed with the app secret: so the connection keeps
    META_APP_SECRET as its app_secret. No override_callback_uri: Meta verifies such a URL during the
    call, with a verify token our handshake could not know before the connection exists.
    """
    pnid, waba_id = values["phone_number_id"], values["waba_id"]
    conflict = route_conflict("meta", {"phone_number_id": pnid})
    if conflict:
        raise SignupError(conflict, step="check")
    step = "exchange"
    try:
        token = meta.exchange_code(graph_url, app_id, app_secret, values["code"])
        step = "subscribe"
        meta.subscribe_app(graph_url, token, waba_id)
        step = "register"
        meta.register_number(graph_url, token, pnid, values["pin"])
    except ProviderError as err:
        # Kind and code only: the detail is for the page (it is scrubbed, but the log needs no more).
        log.warning(
            "meta signup for clinic %s stopped at %s: %s[%s]", clinic_id, step, err.kind.value, err.code
        )
        raise SignupError(_signup_message(step, err), detail=err.detail, step=step) from None
    clinic = db.session.get(Clinic, clinic_id)
    if clinic is None:
        raise SignupError("This clinic does not exist.", step="check")
    conn = connections.create_connection(
        clinic=clinic,
        provider="meta",
        settings={
            "phone_number_id": pnid,
            "waba_id": waba_id,
            "access_token": token,
            "app_secret": app_secret,
            "verify_token": secrets.token_urlsafe(18),
            "base_url": graph_url,
        },
        label=values.get("label") or "",
    )
    log.info("meta signup: connection %s (waba %s) added by user %s", conn.id, waba_id, user_id)
    health = connections.check_health(conn.id)
    _fill_display_phone(conn, (health.data if health else {}) or {})
    return conn


def _signup_message(step: str, err: ProviderError) -> str:
    if err.retryable:
        return UNAVAILABLE
    if step == "exchange" and err.code in ("1", "101"):  # wrong client secret / application id
        return APP_REFUSED
    return STEP_MESSAGES[step]


def _fill_display_phone(conn: Connection, data: Mapping[str, Any]) -> None:
    """The signup window does not say the number; Meta's health answer does."""
    number = str(data.get("display_phone_number") or "")
    if not number or (conn.config or {}).get("display_phone"):
        return
    try:
        e164 = phones.normalize(number)
    except phones.InvalidPhone:
        return
    conn.config = {**(conn.config or {}), "display_phone": e164}  # a new dict: JSON columns track assignment
    conn.display_phone = e164
    db.session.commit()
