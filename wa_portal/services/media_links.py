"""Short-lived signed links to an outbound attachment, for providers that fetch the file themselves.

Twilio (and WAHA or Meta when given a link) download the file from a URL we hand them. The link
names one message, is signed with the app's secret key and expires after ``MEDIA_LINK_TTL`` seconds
(default one hour), so a leaked link exposes one file for a short while and nothing else.
"""

from __future__ import annotations

from flask import current_app
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

SALT = "wa-portal-outbound-media"
DEFAULT_TTL = 3600


def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt=SALT)


def public_base_url() -> str:
    return (current_app.config.get("PUBLIC_BASE_URL") or "http://127.0.0.1:5000").rstrip("/")


def token_for(clinic_id: int, message_id: int) -> str:
    return str(_serializer().dumps([clinic_id, message_id]))


def url_for_message(clinic_id: int, message_id: int) -> str:
    return f"{public_base_url()}/media/out/{token_for(clinic_id, message_id)}"


def read_token(token: str) -> tuple[int, int] | None:
    """(clinic_id, message_id) of a valid, unexpired token; None otherwise."""
    ttl = int(current_app.config.get("MEDIA_LINK_TTL") or DEFAULT_TTL)
    try:
        clinic_id, message_id = _serializer().loads(token, max_age=ttl)
    except (BadSignature, SignatureExpired, ValueError, TypeError):
        return None
    return int(clinic_id), int(message_id)
