"""The one webhook path for every provider: route → verify → store raw → dedupe → enqueue → 200.

A webhook is acknowledged only after its raw event is committed (DESIGN.md rule 2), and
Redis is only the trigger: when it is down the event is still stored and answered 200,
and the sweeper enqueues it later (rule 1).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from flask import current_app

from ..extensions import db
from ..models import Connection, WebhookEvent, WebhookState, utcnow
from ..providers.base import Provider, WebhookError, WebhookRequest, get_provider_class
from . import connections, webhook_store

log = logging.getLogger(__name__)

# Headers worth keeping with the raw event (signatures, delivery ids, timestamps); never cookies
# or authorization headers.
KEPT_HEADERS = (
    "content-type",
    "x-hub-signature-256",
    "x-twilio-signature",
    "x-webhook-hmac",
    "x-webhook-request-id",
    "x-webhook-timestamp",
    "x-chatwoot-signature",
    "x-chatwoot-timestamp",
    "x-chatwoot-delivery",
)


@dataclass(frozen=True)
class Outcome:
    status: int
    message: str
    event_id: int | None = None
    duplicate: bool = False


@dataclass(frozen=True)
class Route:
    """What the hot path needs of a connection, cached per process for a few seconds."""

    connection_id: int
    clinic_id: int
    provider: str
    adapter: Provider


ROUTE_TTL = 10.0  # seconds; a changed secret takes at most this long to apply in every process
_route_cache: dict[tuple[int, str, tuple[str, ...]], tuple[float, list[Route]]] = {}
_route_lock = threading.Lock()


def _routes(provider: str, keys: list[str]) -> list[Route]:
    cache_key = (id(current_app._get_current_object()), provider, tuple(keys))  # type: ignore[attr-defined]
    now = time.monotonic()
    hit = _route_cache.get(cache_key)
    if hit and hit[0] > now:
        return hit[1]
    routes = [
        Route(c.id, c.clinic_id, c.provider, connections.adapter_for(c))
        for c in connections.candidates_for(provider, keys)
    ]
    db.session.commit()  # end the read: the hot path holds no database connection while it waits
    if routes:  # unknown keys are not cached: a connection added a second ago must work
        with _route_lock:
            if len(_route_cache) > 10_000:
                _route_cache.clear()
            _route_cache[cache_key] = (now + ROUTE_TTL, routes)
    return routes


def forget_routes() -> None:
    with _route_lock:
        _route_cache.clear()


def receive(provider: str, req: WebhookRequest) -> Outcome:
    """Handle one webhook delivery; never raises for bad input."""
    try:
        cls = get_provider_class(provider)
    except KeyError:
        return Outcome(404, "unknown provider")
    try:
        keys = cls.route_keys_for_request(req)
    except WebhookError as exc:
        log.info("webhook %s refused: unreadable body (%s)", provider, exc)
        return Outcome(400, "unreadable body")
    candidates = _routes(provider, keys)
    if not candidates:
        log.info("webhook %s refused: no connection for %d route key(s)", provider, len(keys))
        return Outcome(404, "unknown connection")
    route = next((r for r in candidates if r.adapter.verify_webhook(req)), None)
    if route is None:
        log.warning(
            "webhook %s refused: signature check failed (connection %s)",
            provider,
            candidates[0].connection_id,
        )
        return Outcome(401, "invalid signature")
    try:
        event_id = store(route, cls.event_key(req), req)
    except Exception:  # the database is down or too slow: the provider will redeliver
        log.exception("webhook %s could not be stored", provider)
        return Outcome(503, "try again")
    if event_id is None:
        return Outcome(200, "duplicate", duplicate=True)
    return Outcome(200, "ok", event_id=event_id)


def _meta(req: WebhookRequest) -> dict[str, Any]:
    return {
        "method": req.method,
        "url": req.url,
        "headers": {k.lower(): v for k, v in req.headers.items() if k.lower() in KEPT_HEADERS},
        "form": {k: list(v) for k, v in req.form.items()},
        "query": dict(req.query),
        "path_token": req.path_token,
    }


def store(route: Route, dedupe_key: str, req: WebhookRequest) -> int | None:
    """Commit the raw event (group commit, see webhook_store); None when already stored.

    The ingest job is enqueued by the committer after the commit.
    """
    values = {
        "clinic_id": route.clinic_id,
        "connection_id": route.connection_id,
        "provider": route.provider,
        "dedupe_key": dedupe_key[:200],
        "body": req.body,
        "meta": _meta(req),
        "state": WebhookState.RECEIVED,
        "attempts": 0,
        "received_at": utcnow(),
    }
    return webhook_store.committer(current_app._get_current_object()).submit(values)  # type: ignore[attr-defined]


def request_from_event(event: WebhookEvent) -> WebhookRequest:
    meta = event.meta or {}
    return WebhookRequest(
        method=meta.get("method", "POST"),
        url=meta.get("url", ""),
        headers=meta.get("headers", {}),
        body=event.body,
        form=meta.get("form", {}),
        query=meta.get("query", {}),
        path_token=meta.get("path_token"),
    )


def meta_handshake(query: dict[str, str]) -> str | None:
    """Meta's GET verification: echo hub.challenge when the verify token is one of ours."""
    if query.get("hub.mode") != "subscribe" or not query.get("hub.challenge"):
        return None
    token = query.get("hub.verify_token") or ""
    if not token:
        return None
    import hmac

    from sqlalchemy import select

    for conn in db.session.scalars(
        select(Connection).where(Connection.provider == "meta", Connection.active)
    ):
        expected = str(connections.get_secrets(conn).get("verify_token") or "")
        if expected and hmac.compare_digest(expected, token):
            return query["hub.challenge"]
    return None
