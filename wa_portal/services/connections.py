"""Provider connections: create them, keep their secrets encrypted, build adapters for them."""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
from typing import Any

from flask import current_app
from sqlalchemy import select

from ..extensions import db
from ..models import Clinic, Connection, ConnectionRoute, ConnectionStatus, utcnow
from ..providers.base import Health, Provider, get_provider_class
from .crypto import key_ring
from .redis_conn import redis_url

# Settings generated for the clinic when not given: webhook secrets nobody should have to invent.
GENERATED: dict[str, dict[str, Any]] = {
    "sandbox": {
        "phone_number_id": lambda: "sbx" + secrets.token_hex(6),
        "app_secret": lambda: secrets.token_urlsafe(24),
    },
    "dialog360": {"webhook_token": lambda: secrets.token_hex(24)},  # 360dialog refuses "_" in URLs
    "ses": {"webhook_token": lambda: secrets.token_hex(24)},
    "meta": {"verify_token": lambda: secrets.token_urlsafe(18)},
}


class ConnectionSettingsError(ValueError):
    pass


def _aad(conn: Connection) -> str:
    return f"connection:{conn.provider}:credentials"


def split_settings(provider: str, settings: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(plain, secret) by the adapter's settings schema; unknown keys are refused."""
    cls = get_provider_class(provider)
    schema = {f.name: f for f in cls.settings_schema}
    unknown = sorted(set(settings) - set(schema))
    if unknown:
        raise ConnectionSettingsError(
            f"unknown setting(s) for {provider}: {', '.join(unknown)}; expected: {', '.join(schema)}"
        )
    plain: dict[str, Any] = {}
    secret: dict[str, Any] = {}
    for name, field in schema.items():
        value = settings.get(name, field.default)
        if value in (None, ""):
            if field.required:
                raise ConnectionSettingsError(f"{provider} needs {name} ({field.label})")
            continue
        (secret if field.secret else plain)[name] = value
    return plain, secret


def create_connection(
    *, clinic: Clinic, provider: str, settings: Mapping[str, Any], label: str = ""
) -> Connection:
    """Store a connection (secrets encrypted) and the keys its webhooks are routed by."""
    values = dict(settings)
    for name, make in GENERATED.get(provider, {}).items():
        values.setdefault(name, make())
    plain, secret = split_settings(provider, values)
    conn = Connection(
        clinic_id=clinic.id,
        provider=provider,
        label=label or get_provider_class(provider).display_name,
        display_phone=plain.get("display_phone") or plain.get("whatsapp_from") or plain.get("from_email"),
        config=plain,
        status=ConnectionStatus.CONNECTED,
    )
    db.session.add(conn)
    set_secrets(conn, secret)
    db.session.flush()
    refresh_routes(conn)
    db.session.commit()
    return conn


def set_secrets(conn: Connection, secret: Mapping[str, Any]) -> None:
    conn.credentials_encrypted = key_ring().encrypt(json.dumps(dict(secret)).encode(), aad=_aad(conn))


def get_secrets(conn: Connection) -> dict[str, Any]:
    if not conn.credentials_encrypted:
        return {}
    return json.loads(key_ring().decrypt(conn.credentials_encrypted, aad=_aad(conn)))


def settings_for(conn: Connection) -> dict[str, Any]:
    return {**(conn.config or {}), **get_secrets(conn)}


def refresh_routes(conn: Connection) -> None:
    cls = get_provider_class(conn.provider)
    keys = set(cls.route_keys_for_settings(settings_for(conn)))
    existing = {r.route_key: r for r in conn.routes}
    for key in keys - set(existing):
        conn.routes.append(ConnectionRoute(provider=conn.provider, route_key=key))
    for key in set(existing) - keys:
        conn.routes.remove(existing[key])


def adapter_for(conn: Connection) -> Provider:
    """Build the provider adapter with decrypted settings (never logged, never rendered)."""
    cls = get_provider_class(conn.provider)
    settings = settings_for(conn)
    if conn.provider == "sandbox":
        settings["_redis_url"] = redis_url()  # the simulated phone lives in Redis
    return cls(settings)


def candidates_for(provider: str, route_keys: list[str]) -> list[Connection]:
    """Active connections a webhook with these route keys may belong to (ordered, no duplicates)."""
    if not route_keys:
        return []
    rows = db.session.scalars(
        select(Connection)
        .join(ConnectionRoute, ConnectionRoute.connection_id == Connection.id)
        .where(
            ConnectionRoute.provider == provider,
            ConnectionRoute.route_key.in_(route_keys),
            Connection.active.is_(True),
        )
        .order_by(Connection.id)
    ).unique()
    return list(dict.fromkeys(rows))


def get_for_clinic(*, clinic_id: int, connection_id: int) -> Connection:
    return db.first_or_404(
        select(Connection).where(Connection.id == connection_id, Connection.clinic_id == clinic_id)
    )


def list_for_clinic(clinic_id: int, provider: str | None = None) -> list[Connection]:
    q = select(Connection).where(Connection.clinic_id == clinic_id, Connection.active.is_(True))
    if provider:
        q = q.where(Connection.provider == provider)
    return list(db.session.scalars(q.order_by(Connection.id)))


def webhook_url(conn: Connection, base_url: str | None = None) -> str:
    """The URL to configure at the provider for this connection."""
    base = (base_url or current_app.config.get("PUBLIC_BASE_URL") or "http://127.0.0.1:5000").rstrip("/")
    paths = {
        "meta": "/webhooks/meta",
        "dialog360": "/webhooks/360dialog/{webhook_token}",
        "twilio": "/webhooks/twilio",
        "waha": "/webhooks/waha",
        "chatwoot": "/webhooks/chatwoot",
        "sandbox": "/webhooks/sandbox",
        "ses": "/webhooks/ses/{webhook_token}",
    }
    path = paths.get(conn.provider, f"/webhooks/{conn.provider}")
    if not path:
        return "(outbound only: no webhook)"
    if "{webhook_token}" in path:
        token = get_secrets(conn).get("webhook_token")
        if not token:  # an SES connection made before email feedback existed
            return "(outbound only: no webhook)"
        path = path.format(webhook_token=token)
    return base + path


def check_health(connection_id: int) -> Health | None:
    """Ask the provider how the connection is (token valid, number registered, WAHA session) and record it."""
    conn = db.session.get(Connection, connection_id)
    if conn is None or not conn.active:
        return None
    try:
        health = adapter_for(conn).health()
    except Exception as exc:  # an adapter bug must not stop the schedule for the other connections
        health = Health(ok=False, status="error", detail=f"Health check failed: {type(exc).__name__}")
    conn.health_checked_at = utcnow()
    conn.status_detail = (health.detail or health.status)[:500]
    if health.ok:
        conn.status = ConnectionStatus.CONNECTED
    elif health.status in ("token invalid", "not configured", "FAILED", "STOPPED", "SCAN_QR_CODE"):
        conn.status = ConnectionStatus.DISCONNECTED
    else:
        conn.status = ConnectionStatus.DEGRADED
    quality = (health.data or {}).get("quality_rating")
    if quality:
        conn.quality_rating = str(quality)[:16]
    db.session.commit()
    return health


def all_active_ids() -> list[int]:
    return list(
        db.session.scalars(select(Connection.id).where(Connection.active.is_(True)).order_by(Connection.id))
    )
