"""The one webhook path for every provider: route → verify → store raw → dedupe → enqueue → 200.

A webhook is acknowledged only after its raw event is committed (DESIGN.md rule 2), and
Redis is only the trigger: when it is down the event is still stored and answered 200,
and the sweeper enqueues it later (rule 1).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy.dialects import postgresql, sqlite

from ..extensions import db
from ..models import Connection, WebhookEvent, WebhookState
from ..providers.base import WebhookError, WebhookRequest, get_provider_class
from . import connections

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
    candidates = connections.candidates_for(provider, keys)
    if not candidates:
        log.info("webhook %s refused: no connection for %d route key(s)", provider, len(keys))
        return Outcome(404, "unknown connection")
    conn = next((c for c in candidates if connections.adapter_for(c).verify_webhook(req)), None)
    if conn is None:
        log.warning("webhook %s refused: signature check failed (connection %s)", provider, candidates[0].id)
        return Outcome(401, "invalid signature")
    event_id = store(conn, cls.event_key(req), req)
    if event_id is None:
        return Outcome(200, "duplicate", duplicate=True)
    from ..jobs import WEBHOOKS, enqueue, tasks

    enqueue(tasks.ingest_event, event_id, queue=WEBHOOKS, job_id=f"ingest-{event_id}")
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


def store(conn: Connection, dedupe_key: str, req: WebhookRequest) -> int | None:
    """Insert the raw event and commit; None when the provider already delivered it."""
    values = {
        "clinic_id": conn.clinic_id,
        "connection_id": conn.id,
        "provider": conn.provider,
        "dedupe_key": dedupe_key[:200],
        "body": req.body,
        "meta": _meta(req),
        "state": WebhookState.RECEIVED,
    }
    dialect = db.session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = (
        insert(WebhookEvent)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["provider", "dedupe_key"])
        .returning(WebhookEvent.id)
    )
    event_id = db.session.execute(stmt).scalar()
    db.session.commit()
    return event_id


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
