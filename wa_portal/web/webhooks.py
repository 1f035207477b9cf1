"""Webhook endpoints (CONTRACT.md): no login, no CSRF, each provider's own signature.

Every route builds a ``WebhookRequest`` and runs the one shared path in
``services.webhooks.receive``: 404 unknown connection, 401 bad signature, 400 unreadable
body, 200 once the raw event is committed.

The POST routes are answered by ``FastPath``, a WSGI layer in front of Flask: a provider's
delivery needs no session, login, CSRF, rate-limit bookkeeping, audit or HTML security headers,
and Flask's per-request machinery for those was about a third of a webhook's CPU. It matches the
same URL rules (so ``url_for`` and the URL map stay the one list of routes), pushes only an app
context and calls the same ``answer`` as the Flask views below, which serve when it is turned off
(``WA_WEBHOOK_FAST_PATH=0``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any

from flask import Blueprint, Flask, current_app, jsonify, request
from limits import parse
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Request

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


def _refused(remote_addr: str | None) -> bool:
    """Count a refusal against the caller's address; True once it is over WEBHOOK_REFUSAL_LIMIT."""
    try:
        item = parse(current_app.config["WEBHOOK_REFUSAL_LIMIT"])
        return not limiter.limiter.hit(item, remote_addr or "127.0.0.1", "webhook-refusals")
    except Exception:  # the limit store is down: answer the refusal itself, never fail on the limit
        log.warning("webhook refusal could not be counted (rate-limit storage unavailable)")
        return False


Answer = tuple[dict[str, str], int, dict[str, str]]


def _reply(payload: dict[str, str], status: int, req: Request) -> Answer:
    if status in REFUSALS and _refused(req.remote_addr):
        return {"status": "too many refused webhooks"}, 429, {"Retry-After": "60"}
    return payload, status, {}


def external_url(req: Request) -> str:
    """The URL the provider called, as it saw it (Twilio signs it): PUBLIC_BASE_URL or proxy headers."""
    base = current_app.config.get("PUBLIC_BASE_URL")
    path = req.full_path if req.query_string else req.path
    if base:
        return base + path
    proto = req.headers.get("X-Forwarded-Proto", req.scheme).split(",")[0].strip()
    host = req.headers.get("X-Forwarded-Host", req.host).split(",")[0].strip()
    return f"{proto}://{host}{path}"


def _request(req: Request, path_token: str | None = None) -> WebhookRequest:
    return WebhookRequest(
        method=req.method,
        url=external_url(req),
        headers=dict(req.headers),
        body=req.get_data(cache=True),
        form={k: req.form.getlist(k) for k in req.form}
        if req.mimetype == "application/x-www-form-urlencoded"
        else {},
        query=req.args.to_dict(),
        path_token=path_token,
    )


def answer(provider: str, req: Request, path_token: str | None = None) -> Answer:
    outcome = webhooks.receive(provider, _request(req, path_token))
    return _reply({"status": outcome.message}, outcome.status, req)


@bp.get("/meta")
def meta_handshake():
    challenge = webhooks.meta_handshake(request.args.to_dict())
    if challenge is None:
        payload, status, headers = _reply({"status": "verification failed"}, 403, request)
        return jsonify(payload), status, headers
    return challenge, 200, {"Content-Type": "text/plain"}


# The POST routes, each with the provider it takes: endpoint -> (rule, provider). "token" is the
# path token of 360dialog and of the SES feedback (SNS) subscription. The Flask views and FastPath
# are both built from this one table.
POST_ROUTES = {
    "meta": ("/meta", "meta"),
    "dialog360": ("/360dialog/<token>", "dialog360"),
    "twilio": ("/twilio", "twilio"),
    "twilio_status": ("/twilio/status", "twilio"),
    "waha": ("/waha", "waha"),
    "chatwoot": ("/chatwoot", "chatwoot"),
    "ses": ("/ses/<token>", "ses"),
    "sandbox": ("/sandbox", "sandbox"),
}
PROVIDER_OF = {f"{bp.name}.{endpoint}": provider for endpoint, (_, provider) in POST_ROUTES.items()}


def _view(provider: str) -> Callable[..., Any]:
    def view(token: str | None = None):  # type: ignore[no-untyped-def]
        payload, status, headers = answer(provider, request, token)
        return jsonify(payload), status, headers

    return view


for _endpoint, (_rule, _provider) in POST_ROUTES.items():
    bp.add_url_rule(_rule, _endpoint, _view(_provider), methods=["POST"])


FAST_HEADERS = [
    ("Content-Type", "application/json"),
    ("X-Content-Type-Options", "nosniff"),
    ("Cache-Control", "no-store"),
]
WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class FastPath:
    """Answer webhook POSTs without Flask's request context (see the module docstring)."""

    def __init__(self, app: Flask, wsgi_app: WSGIApp) -> None:
        self.app = app
        self.wsgi_app = wsgi_app
        self.urls = app.url_map.bind("localhost")  # matched on the path alone

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if environ.get("REQUEST_METHOD") != "POST" or not path.startswith("/webhooks/"):
            return self.wsgi_app(environ, start_response)
        try:
            endpoint, args = self.urls.match(path, "POST")
        except HTTPException:  # no such webhook URL: Flask's own 404/405
            return self.wsgi_app(environ, start_response)
        provider = PROVIDER_OF.get(str(endpoint))
        if provider is None:
            return self.wsgi_app(environ, start_response)
        req = Request(environ)
        status, payload = 500, {"error": {"code": "500", "message": "Internal error"}}
        headers: dict[str, str] = {}
        with self.app.app_context():
            limit = self.app.config.get("MAX_CONTENT_LENGTH")
            try:
                if limit and (req.content_length or 0) > limit:
                    status, payload = 413, {"error": {"code": "413", "message": "Body too large"}}
                else:
                    req.max_content_length = limit
                    payload, status, headers = answer(provider, req, args.get("token"))  # type: ignore[assignment]
            except HTTPException as exc:  # e.g. a body larger than announced
                status, payload = exc.code or 400, {"error": {"code": str(exc.code), "message": exc.name}}
            except Exception:
                log.exception("webhook %s failed", provider)
        body = json.dumps(payload).encode()
        start_response(
            f"{status} {HTTPStatus(status).phrase}",
            [*FAST_HEADERS, ("Content-Length", str(len(body))), *headers.items()],
        )
        return [body]


def install_fast_path(app: Flask) -> None:
    if app.config.get("WEBHOOK_FAST_PATH", True):
        app.wsgi_app = FastPath(app, app.wsgi_app)  # type: ignore[method-assign]
