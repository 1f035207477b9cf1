"""Webhook endpoints (CONTRACT.md): no login, no CSRF, each provider's own signature.

Every route builds a ``WebhookRequest`` and runs the one shared path in
``services.webhooks.receive``: 404 unknown connection, 401 bad signature, 400 unreadable
body, 200 once the raw event is committed.
"""

from __future__ import annotations

import logging

from flask import Blueprint, current_app, jsonify, request
from flask_limiter.util import get_remote_address
from limits import parse

from ..extensions import csrf, limiter
from ..providers.base import WebhookRequest
from ..services import webhooks

log = logging.getLogger(__name__)

bp = Blueprint("webhooks", __name__, url_prefix="/webhooks")
csrf.exempt(bp)
# Providers may post thousands of valid webhooks a minute; only refusals (bad signature, unknown
# connection, unreadable body) count against the limit, so probing gets 429 and real traffic never does.
# Flask-Limiter's own per-route limit would still read its counter (and the window for its headers)
# on every request: three Redis round trips per accepted webhook, about a third of its cost. So the
# limiter skips this blueprint altogether (a request filter also skips its per-request bookkeeping)
# and a refusal is counted only when we refuse (``_refused``).


@limiter.request_filter
def _webhooks_count_only_refusals() -> bool:
    return request.blueprint == "webhooks"


REFUSALS = (400, 401, 403, 404)


def _refused() -> bool:
    """Count a refusal against the caller's address; True once it is over WEBHOOK_REFUSAL_LIMIT."""
    try:
        item = parse(current_app.config["WEBHOOK_REFUSAL_LIMIT"])
        return not limiter.limiter.hit(item, get_remote_address(), "webhook-refusals")
    except Exception:  # the limit store is down: answer the refusal itself, never fail on the limit
        log.warning("webhook refusal could not be counted (rate-limit storage unavailable)")
        return False


def _reply(payload: dict[str, str], status: int):
    if status in REFUSALS and _refused():
        return jsonify(status="too many refused webhooks"), 429, {"Retry-After": "60"}
    return jsonify(payload), status


def external_url() -> str:
    """The URL the provider called, as it saw it (Twilio signs it): PUBLIC_BASE_URL or proxy headers."""
    base = current_app.config.get("PUBLIC_BASE_URL")
    path = request.full_path if request.query_string else request.path
    if base:
        return base + path
    proto = request.headers.get("X-Forwarded-Proto", request.scheme).split(",")[0].strip()
    host = request.headers.get("X-Forwarded-Host", request.host).split(",")[0].strip()
    return f"{proto}://{host}{path}"


def _request(path_token: str | None = None) -> WebhookRequest:
    return WebhookRequest(
        method=request.method,
        url=external_url(),
        headers=dict(request.headers),
        body=request.get_data(cache=True),
        form={k: request.form.getlist(k) for k in request.form}
        if request.mimetype == "application/x-www-form-urlencoded"
        else {},
        query=request.args.to_dict(),
        path_token=path_token,
    )


def _answer(provider: str, path_token: str | None = None):
    outcome = webhooks.receive(provider, _request(path_token))
    return _reply({"status": outcome.message}, outcome.status)


@bp.get("/meta")
def meta_handshake():
    challenge = webhooks.meta_handshake(request.args.to_dict())
    if challenge is None:
        return _reply({"status": "verification failed"}, 403)
    return challenge, 200, {"Content-Type": "text/plain"}


@bp.post("/meta")
def meta():
    return _answer("meta")


@bp.post("/360dialog/<token>")
def dialog360(token: str):
    return _answer("dialog360", token)


@bp.post("/twilio")
def twilio():
    return _answer("twilio")


@bp.post("/twilio/status")
def twilio_status():
    return _answer("twilio")


@bp.post("/waha")
def waha():
    return _answer("waha")


@bp.post("/chatwoot")
def chatwoot():
    return _answer("chatwoot")


@bp.post("/sandbox")
def sandbox():
    return _answer("sandbox")
