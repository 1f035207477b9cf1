"""Per-clinic API keys for /api/v1: high-entropy tokens shown once, stored as their sha256."""

from __future__ import annotations

import hashlib
import secrets

from sqlalchemy import select

from ..extensions import db
from ..models import ApiKey, Clinic, utcnow

TOKEN_PREFIX = "wak_"  # noqa: S105 - recognisable in secret scanners and logs (we never log the rest)


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create(*, clinic_id: int, name: str = "", created_by_id: int | None = None) -> tuple[ApiKey, str]:
    """A new key for the clinic; returns the row and the token, which is never shown again."""
    if db.session.get(Clinic, clinic_id) is None:
        raise LookupError("clinic")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)  # 256 bits: sha256 alone is a safe store
    key = ApiKey(
        clinic_id=clinic_id,
        name=(name or "").strip()[:100] or "API key",
        prefix=token[:12],
        key_hash=_hash(token),
        created_by_id=created_by_id,
    )
    db.session.add(key)
    db.session.commit()
    return key, token


def authenticate(token: str | None) -> ApiKey | None:
    """The live key for ``token``, or None; records when it was last used."""
    if not token or not token.startswith(TOKEN_PREFIX) or len(token) > 200:
        return None
    key = db.session.scalar(select(ApiKey).where(ApiKey.key_hash == _hash(token), ApiKey.revoked.is_(False)))
    if key is None:
        return None
    now = utcnow()
    if key.last_used_at is None or (now - key.last_used_at).total_seconds() > 60:
        key.last_used_at = now
        db.session.commit()
    return key


def list_for_clinic(*, clinic_id: int) -> list[ApiKey]:
    return list(
        db.session.scalars(select(ApiKey).where(ApiKey.clinic_id == clinic_id).order_by(ApiKey.id.desc()))
    )


def revoke(*, clinic_id: int, key_id: int) -> bool:
    key = db.session.scalar(select(ApiKey).where(ApiKey.id == key_id, ApiKey.clinic_id == clinic_id))
    if key is None:
        return False
    key.revoked = True
    db.session.commit()
    return True
