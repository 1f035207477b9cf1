"""Outbound intents: record a message as queued, then hand it to the delivery worker."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from ..extensions import db
from ..models import (
    AuthorType,
    Connection,
    Contact,
    ConversationStatus,
    Direction,
    Message,
    MessageStatus,
    utcnow,
)
from ..providers.base import Button
from . import conversations, realtime

MAX_TEXT = 4096  # WhatsApp's limit for a text body


class ComposeError(ValueError):
    """The message cannot be sent as written; the text says why."""


def queue_reply(*, clinic_id: int, conversation_id: int, body: str, author_id: int) -> Message:
    """Record a staff reply as queued and enqueue its delivery (the intent is durable first)."""
    text = (body or "").strip()
    if not text:
        raise ComposeError("Write a message first.")
    if len(text) > MAX_TEXT:
        raise ComposeError(f"Messages can be at most {MAX_TEXT} characters.")
    conv = conversations.get(clinic_id=clinic_id, conversation_id=conversation_id)
    now = utcnow()
    msg = Message(
        clinic_id=clinic_id,
        conversation_id=conv.id,
        connection_id=conv.connection_id,
        direction=Direction.OUT,
        kind="text",
        body=text,
        author_type=AuthorType.STAFF,
        author_id=author_id,
        status=MessageStatus.QUEUED,
        created_at=now,
    )
    db.session.add(msg)
    conversations.touch(conv, at=now, preview=text, inbound=False)
    db.session.commit()
    enqueue_delivery(msg.id)
    realtime.publish(clinic_id, "message", conversation_id=conv.id, message_id=msg.id, inbound=False)
    return msg


def enqueue_delivery(message_id: int) -> bool:
    from ..jobs import DELIVERY, enqueue, tasks

    return enqueue(tasks.deliver_message, message_id, queue=DELIVERY, job_id=f"deliver-{message_id}")


@dataclass(frozen=True)
class TemplateUse:
    """An approved WhatsApp template and the values for its numbered variables."""

    name: str
    language: str
    params: Sequence[str] = ()


def default_connection(clinic_id: int) -> Connection | None:
    """The clinic's WhatsApp number used for messages the clinic starts (first active one)."""
    return db.session.scalar(
        select(Connection)
        .where(Connection.clinic_id == clinic_id, Connection.active.is_(True), Connection.provider != "ses")
        .order_by(Connection.id)
    )


def queue_notification(
    *,
    clinic_id: int,
    contact_id: int,
    purpose: str,
    body: str,
    template: TemplateUse | None = None,
    buttons: Sequence[Button] = (),
    critical: bool = False,
    connection_id: int | None = None,
    author_type: AuthorType = AuthorType.SYSTEM,
    author_id: int | None = None,
    extra: dict[str, Any] | None = None,
) -> Message:
    """Record a message the clinic starts (confirmation, reminder, broadcast …) as queued; enqueue it.

    ``body`` is the full text (what free text or SMS/email fallbacks carry); ``template`` is
    what WhatsApp gets when the 24-hour window is closed. The intent is committed first.
    """
    contact = db.session.scalar(
        select(Contact).where(Contact.id == contact_id, Contact.clinic_id == clinic_id)
    )
    if contact is None:
        raise ComposeError("Unknown contact.")
    conn = (
        db.session.scalar(
            select(Connection).where(Connection.id == connection_id, Connection.clinic_id == clinic_id)
        )
        if connection_id
        else default_connection(clinic_id)
    )
    if conn is None:
        raise ComposeError("The clinic has no WhatsApp connection yet.")
    conv = conversations.get_or_create(
        connection=conn, contact=contact, initial_status=ConversationStatus.BOT
    )
    now = utcnow()
    msg = Message(
        clinic_id=clinic_id,
        conversation_id=conv.id,
        connection_id=conn.id,
        direction=Direction.OUT,
        kind="template" if template else ("buttons" if buttons else "text"),
        body=body,
        author_type=author_type,
        author_id=author_id,
        status=MessageStatus.QUEUED,
        purpose=purpose,
        critical=critical,
        template_name=template.name if template else None,
        template_language=template.language if template else None,
        template_params=list(template.params) if template else None,
        extra={
            **(extra or {}),
            **({"buttons": [{"id": b.id, "title": b.title} for b in buttons]} if buttons else {}),
        },
        created_at=now,
    )
    db.session.add(msg)
    conversations.touch(conv, at=now, preview=body, inbound=False)
    db.session.commit()
    enqueue_delivery(msg.id)
    realtime.publish(clinic_id, "message", conversation_id=conv.id, message_id=msg.id, inbound=False)
    return msg
