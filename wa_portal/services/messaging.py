"""Outbound intents: record a message as queued, then hand it to the delivery worker."""

from __future__ import annotations

from ..extensions import db
from ..models import AuthorType, Direction, Message, MessageStatus, utcnow
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
