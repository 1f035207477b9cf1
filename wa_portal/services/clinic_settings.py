"""Clinic settings an admin changes in the portal: identity (name, timezone, locale, country) and the
delivery/safety policy the delivery code reads from ``clinic.settings``.

``validate_*`` are pure: raw form values in, a :class:`Validation` out (``errors`` by field, in words,
or the cleaned ``values``). ``save_*`` write cleaned values, commit, and log who changed what (names
and sizes, never secrets). Defaults shown on the pages are the ones the readers use:
``messaging.check_phi`` (``phi_policy`` "warn", ``phi_terms`` none), ``delivery.channel_chain``
(``fallback_chain``), ``delivery._try_target`` / ``check_critical`` (``critical_timeout_minutes`` 30),
``delivery._on_error`` (``max_attempts``) and ``delivery.consent_refusal`` (``emergency_to_opted_out``).
"""

from __future__ import annotations

import logging
import zoneinfo
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import phonenumbers
from sqlalchemy import select

from ..extensions import db
from ..models import Clinic, Connection
from ..providers.base import get_provider_class
from . import connections
from .delivery import DEFAULT_CHAIN, MAX_ATTEMPTS
from .phones import mask

log = logging.getLogger(__name__)

LOCALES: dict[str, str] = {"en": "English", "es": "Español", "pt": "Português", "hi": "हिन्दी"}
PHI_POLICIES: dict[str, str] = {
    "allow": "Send free text as written; what looks like health data is noted on the message.",
    "warn": "Show staff what looks like health data and send only after they confirm.",
    "block": "Refuse free text with health data on WhatsApp and SMS; staff use a template or call.",
}
CHANNEL_NAMES: dict[str, str] = {"whatsapp": "WhatsApp", "sms": "SMS", "email": "Email"}

# The readers' own defaults (see the module docstring); keep them in step with delivery/messaging.
DEFAULT_PHI_POLICY = "warn"
DEFAULT_CRITICAL_TIMEOUT_MINUTES = 30
DEFAULT_MAX_ATTEMPTS = MAX_ATTEMPTS
DEFAULT_EMERGENCY_TO_OPTED_OUT = True

MAX_PHI_TERMS = 200
MAX_PHI_TERM_LENGTH = 100
CRITICAL_TIMEOUT_RANGE = (1, 1440)
MAX_ATTEMPTS_RANGE = (1, 20)
MAX_NAME_LENGTH = 200

MESSAGING_KEYS = (
    "phi_policy",
    "phi_terms",
    "fallback_chain",
    "critical_timeout_minutes",
    "max_attempts",
    "emergency_to_opted_out",
)


@dataclass(frozen=True, slots=True)
class Validation:
    values: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.errors


# --- clinic identity ---------------------------------------------------------------------------


@lru_cache(maxsize=1)
def timezones() -> tuple[str, ...]:
    """IANA zone names this server knows (for the page's suggestions and for validation)."""
    return tuple(sorted(zoneinfo.available_timezones()))


def country_choices(display_locale: str = "en") -> list[tuple[str, str]]:
    """(code, "Name (CODE)") for every region phonenumbers can parse numbers for, by name."""
    from babel import Locale, UnknownLocaleError

    try:
        names = Locale.parse(display_locale).territories
    except (UnknownLocaleError, ValueError):
        names = Locale("en").territories
    rows = [(cc, f"{names.get(cc, cc)} ({cc})") for cc in phonenumbers.SUPPORTED_REGIONS]
    return sorted(rows, key=lambda r: r[1].casefold())


def _valid_timezone(name: str) -> bool:
    if name not in timezones():
        return False
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return False
    return True


def validate_clinic(data: Mapping[str, Any]) -> Validation:
    """Name, timezone (IANA, checked with zoneinfo), locale (en/es/pt/hi), default country (ISO alpha-2)."""
    errors: dict[str, str] = {}
    name = " ".join(str(data.get("name") or "").split())
    if not name:
        errors["name"] = "Enter the clinic's name."
    elif len(name) > MAX_NAME_LENGTH:
        errors["name"] = f"The name can be at most {MAX_NAME_LENGTH} characters."
    tz = str(data.get("timezone") or "").strip()
    if not tz:
        errors["timezone"] = "Choose a timezone, e.g. Europe/Madrid."
    elif not _valid_timezone(tz):
        errors["timezone"] = (
            f"“{tz[:64]}” is not a timezone this server knows; use a name like Europe/Madrid."
        )
    locale = str(data.get("locale") or "").strip().lower()
    if locale not in LOCALES:
        errors["locale"] = "Choose one of the languages offered: " + ", ".join(LOCALES.values()) + "."
    country = str(data.get("country") or "").strip().upper()
    if not country:
        errors["country"] = "Choose the country patients' local phone numbers belong to."
    elif country not in phonenumbers.SUPPORTED_REGIONS:
        errors["country"] = (
            f"“{country[:8]}” is not a two-letter country code with phone numbers (e.g. ES, US)."
        )
    if errors:
        return Validation(errors=errors)
    return Validation(values={"name": name, "timezone": tz, "locale": locale, "country": country})


def clinic_values(clinic: Clinic) -> dict[str, Any]:
    return {
        "name": clinic.name,
        "timezone": clinic.timezone,
        "locale": clinic.locale,
        "country": clinic.country,
    }


def save_clinic(*, clinic_id: int, user_id: int, values: Mapping[str, Any]) -> Clinic:
    """Write validated identity values (see :func:`validate_clinic`) and log the change."""
    clinic = _clinic(clinic_id)
    before = clinic_values(clinic)
    clinic.name = values["name"]
    clinic.timezone = values["timezone"]
    clinic.locale = values["locale"]
    clinic.country = values["country"]
    db.session.commit()
    _log_changes(clinic_id, user_id, before, clinic_values(clinic))
    return clinic


# --- messaging policy ----------------------------------------------------------------------------


def messaging_values(clinic: Clinic) -> dict[str, Any]:
    """The policy as the delivery code sees it (stored value, else the reader's default)."""
    policy = str(clinic.setting("phi_policy", DEFAULT_PHI_POLICY))
    chain_raw = clinic.setting("fallback_chain") or list(DEFAULT_CHAIN)
    chain = [str(c).lower() for c in chain_raw if str(c).lower() in DEFAULT_CHAIN]
    return {
        "phi_policy": policy if policy in PHI_POLICIES else DEFAULT_PHI_POLICY,
        "phi_terms": [str(t) for t in (clinic.setting("phi_terms", []) or [])],
        "fallback_chain": list(dict.fromkeys(chain)) or list(DEFAULT_CHAIN),
        "critical_timeout_minutes": _as_int(
            clinic.setting("critical_timeout_minutes"), DEFAULT_CRITICAL_TIMEOUT_MINUTES
        ),
        "max_attempts": _as_int(clinic.setting("max_attempts"), DEFAULT_MAX_ATTEMPTS),
        "emergency_to_opted_out": bool(
            clinic.setting("emergency_to_opted_out", DEFAULT_EMERGENCY_TO_OPTED_OUT)
        ),
    }


def _as_int(value: Any, default: int) -> int:
    try:
        return int(float(value))
    except (TypeError, ValueError):
        return default


def parse_terms(raw: str | Iterable[str]) -> list[str]:
    """One term per line: trimmed, spaces collapsed, empty lines and repeats (in any case) dropped."""
    lines = raw.splitlines() if isinstance(raw, str) else list(raw)
    seen: dict[str, str] = {}
    for line in lines:
        term = " ".join(str(line).split())
        if term and term.casefold() not in seen:
            seen[term.casefold()] = term
    return list(seen.values())


def _int_in(raw: Any, lo: int, hi: int, what: str) -> tuple[int | None, str | None]:
    text = str(raw if raw is not None else "").strip()
    message = f"Enter a whole number of {what} from {lo} to {hi}."
    if not text:
        return None, message
    try:
        value = int(text)
    except ValueError:
        return None, message
    if not lo <= value <= hi:
        return None, message
    return value, None


def validate_messaging(data: Mapping[str, Any]) -> Validation:
    """The delivery policy from raw form values; ``fallback_chain`` is the chosen channels in order."""
    errors: dict[str, str] = {}
    values: dict[str, Any] = {}

    policy = str(data.get("phi_policy") or "").strip().lower()
    if policy not in PHI_POLICIES:
        errors["phi_policy"] = "Choose what happens to health data: allow, warn or block."
    values["phi_policy"] = policy

    terms = parse_terms(data.get("phi_terms") or "")
    long_terms = [t for t in terms if len(t) > MAX_PHI_TERM_LENGTH]
    if len(terms) > MAX_PHI_TERMS:
        errors["phi_terms"] = f"At most {MAX_PHI_TERMS} terms (there are {len(terms)} different ones)."
    elif long_terms:
        errors["phi_terms"] = (
            f"A term can be at most {MAX_PHI_TERM_LENGTH} characters: “{long_terms[0][:30]}…” is longer."
        )
    values["phi_terms"] = terms

    raw_chain = data.get("fallback_chain") or []
    chain = [str(c).strip().lower() for c in raw_chain if str(c or "").strip()]
    unknown = [c for c in chain if c not in DEFAULT_CHAIN]
    dupes = [c for i, c in enumerate(chain) if c in chain[:i]]
    if unknown:
        errors["fallback_chain"] = f"Unknown channel “{unknown[0][:20]}”: choose WhatsApp, SMS or email."
    elif not chain:
        errors["fallback_chain"] = "Choose at least one channel."
    elif dupes:
        errors["fallback_chain"] = f"{CHANNEL_NAMES[dupes[0]]} is chosen twice: choose each channel once."
    values["fallback_chain"] = chain

    timeout, err = _int_in(data.get("critical_timeout_minutes"), *CRITICAL_TIMEOUT_RANGE, "minutes")
    if err:
        errors["critical_timeout_minutes"] = err
    values["critical_timeout_minutes"] = timeout

    attempts, err = _int_in(data.get("max_attempts"), *MAX_ATTEMPTS_RANGE, "attempts")
    if err:
        errors["max_attempts"] = err
    values["max_attempts"] = attempts

    values["emergency_to_opted_out"] = _truthy(data.get("emergency_to_opted_out"))
    if errors:
        return Validation(errors=errors)
    return Validation(values=values)


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "y", "yes", "on", "true")
    return bool(value)


def save_messaging(*, clinic_id: int, user_id: int, values: Mapping[str, Any]) -> Clinic:
    """Merge validated policy values (see :func:`validate_messaging`) into ``clinic.settings``."""
    clinic = _clinic(clinic_id)
    before = messaging_values(clinic)
    # A new dict, not an in-place change: the JSON column only notices reassignment.
    clinic.settings = {**(clinic.settings or {}), **{k: values[k] for k in MESSAGING_KEYS}}
    db.session.commit()
    _log_changes(clinic_id, user_id, before, messaging_values(clinic))
    return clinic


def _clinic(clinic_id: int) -> Clinic:
    return db.get_or_404(Clinic, clinic_id)


def _describe(key: str, value: Any) -> str:
    if key == "phi_terms":
        return f"{len(value)} term{'' if len(value) == 1 else 's'}"  # the words themselves stay out of logs
    if isinstance(value, list):
        return ",".join(map(str, value))
    return str(value)


def _log_changes(clinic_id: int, user_id: int, before: Mapping[str, Any], after: Mapping[str, Any]) -> None:
    changes = [
        f"{k}: {_describe(k, before.get(k))} -> {_describe(k, after[k])}"
        for k in after
        if before.get(k) != after[k]
    ]
    if changes:
        log.info("clinic %s settings changed by user %s: %s", clinic_id, user_id, "; ".join(changes))


# --- connections (read-only view) ---------------------------------------------------------------

SHOWN_WHEN_SET = "•••• set"  # a secret setting is only ever shown as present or absent
SHOWN_WHEN_UNSET = "not set"


@dataclass(frozen=True, slots=True)
class SettingRow:
    label: str
    value: str
    secret: bool


@dataclass(frozen=True, slots=True)
class ConnectionView:
    conn: Connection
    provider_name: str
    settings: list[SettingRow]
    webhook_url: str


def connection_views(clinic_id: int, *, base_url: str | None = None) -> list[ConnectionView]:
    """The clinic's connections with their settings: secret ones only as set / not set."""
    rows = db.session.scalars(
        select(Connection)
        .where(Connection.clinic_id == clinic_id)
        .order_by(Connection.active.desc(), Connection.id)
    )
    return [connection_view(conn, base_url=base_url) for conn in rows]


def connection_view(conn: Connection, *, base_url: str | None = None) -> ConnectionView:
    try:
        cls = get_provider_class(conn.provider)
    except KeyError:
        return ConnectionView(conn, conn.provider, [], "")
    secrets = connections.get_secrets(conn)
    config = conn.config or {}
    rows: list[SettingRow] = []
    for f in cls.settings_schema:
        if f.secret:
            shown = SHOWN_WHEN_SET if secrets.get(f.name) else SHOWN_WHEN_UNSET
            rows.append(SettingRow(f.label, shown, True))
        else:
            rows.append(SettingRow(f.label, _shown(f.name, config.get(f.name)), False))
    url = connections.webhook_url(conn, base_url)
    # 360dialog puts its secret token in the URL path: show where it goes, never the token.
    for value in secrets.values():
        if isinstance(value, str) and len(value) >= 4 and value in url:
            url = url.replace(value, "••••")
    return ConnectionView(conn, cls.display_name, rows, url)


PHONE_SETTINGS = frozenset({"display_phone", "whatsapp_from", "sms_from"})


def _shown(name: str, value: Any) -> str:
    """A plain setting as shown: phone numbers masked like the delivery pages, e-mail senders in full."""
    if value in (None, ""):
        return "—"
    text = str(value)
    if name in PHONE_SETTINGS and sum(ch.isdigit() for ch in text) >= 7:
        return mask(text)
    return text


def check_connection(*, clinic_id: int, connection_id: int, base_url: str | None = None) -> ConnectionView:
    """Ask the provider now (tenant-checked: another clinic's id is a 404) and return the fresh row."""
    conn = connections.get_for_clinic(clinic_id=clinic_id, connection_id=connection_id)
    connections.check_health(conn.id)
    db.session.refresh(conn)
    return connection_view(conn, base_url=base_url)
