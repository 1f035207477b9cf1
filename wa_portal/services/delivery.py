"""Deliver one outbound message through its connection's provider and record the outcome."""

from __future__ import annotations

import logging
import random
from datetime import timedelta

from ..extensions import db
from ..models import Connection, Contact, Conversation, Message, MessageStatus, utcnow
from ..providers.base import (
    Button,
    Channel,
    ErrorKind,
    MessageKind,
    OutboundMessage,
    ProviderError,
    TemplateRef,
)
from . import connections, realtime
from .phones import mask

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 5
WINDOW_CLOSED_REASON = "24-hour window closed: choose a template"


def deliver(message_id: int) -> None:
    """Send a queued message; idempotent (a message past 'sending' is left alone)."""
    msg = db.session.get(Message, message_id)
    if msg is None or msg.status not in (MessageStatus.QUEUED, MessageStatus.SENDING):
        return
    conv = db.session.get(Conversation, msg.conversation_id)
    conn = db.session.get(Connection, msg.connection_id)
    assert conv is not None
    assert conn is not None
    contact = db.session.get(Contact, conv.contact_id)
    assert contact is not None
    now = utcnow()
    if msg.kind != "template" and not conv.window_open(now):
        _fail(msg, "window_closed", WINDOW_CLOSED_REASON)
        return
    msg.status = MessageStatus.SENDING
    msg.next_attempt_at = None
    msg.attempts = (msg.attempts or 0) + 1
    db.session.commit()

    extra = msg.extra or {}
    out = OutboundMessage(
        to=contact.phone,
        channel=Channel.WHATSAPP,
        kind=MessageKind(msg.kind) if msg.kind in set(MessageKind) else MessageKind.TEXT,
        text=msg.body,
        template=TemplateRef(
            name=msg.template_name, language=msg.template_language or "en", params=msg.template_params or ()
        )
        if msg.template_name
        else None,
        buttons=[Button(b["id"], b["title"]) for b in extra.get("buttons", [])],
        client_ref=f"msg-{msg.id}",
        conversation_ref=conv.provider_thread_ref,
    )
    try:
        result = connections.adapter_for(conn).send(out)
    except ProviderError as exc:
        _handle_error(msg, exc)
        return
    msg.provider_message_id = result.provider_message_id
    msg.status = MessageStatus.SENT
    msg.sent_at = utcnow()
    msg.error_code = msg.error_detail = None
    db.session.commit()
    log.info("message %s sent to %s via %s", msg.id, mask(contact.phone), conn.provider)
    realtime.publish(msg.clinic_id, "status", conversation_id=msg.conversation_id, message_id=msg.id)


def _handle_error(msg: Message, exc: ProviderError) -> None:
    if exc.retryable and msg.attempts < MAX_ATTEMPTS:
        delay = exc.retry_after or min(300.0, 2.0 * 2**msg.attempts) * random.random()  # full jitter
        msg.status = MessageStatus.QUEUED
        msg.next_attempt_at = utcnow() + timedelta(seconds=max(delay, 0.5))
        msg.error_code, msg.error_detail = exc.code, f"Retrying: {exc.detail}"[:500]
        db.session.commit()
        from ..jobs import DELIVERY, enqueue, tasks

        enqueue(
            tasks.deliver_message,
            msg.id,
            queue=DELIVERY,
            job_id=f"deliver-{msg.id}-{msg.attempts}",
            delay=timedelta(seconds=max(delay, 0.5)),
        )
        return
    _fail(msg, exc.code or exc.kind.value, exc.detail)
    if exc.kind == ErrorKind.AUTH:
        log.warning("connection %s credentials refused by the provider", msg.connection_id)


def _fail(msg: Message, code: str, detail: str) -> None:
    msg.status = MessageStatus.FAILED
    msg.failed_at = utcnow()
    msg.error_code = code[:40]
    msg.error_detail = detail[:500]
    db.session.commit()
    log.info("message %s failed: %s", msg.id, code)
    realtime.publish(msg.clinic_id, "status", conversation_id=msg.conversation_id, message_id=msg.id)
