"""Conversations and contacts: find, list, and keep their counters honest."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import joinedload

from ..extensions import db
from ..models import (
    Clinic,
    Connection,
    Contact,
    Conversation,
    ConversationStatus,
    Message,
)
from .phones import InvalidPhone, normalize

PREVIEW_LEN = 120


def get(*, clinic_id: int, conversation_id: int) -> Conversation:
    """A conversation of this clinic, or 404 (never another clinic's)."""
    return db.first_or_404(
        select(Conversation)
        .options(joinedload(Conversation.contact), joinedload(Conversation.connection))
        .where(Conversation.id == conversation_id, Conversation.clinic_id == clinic_id)
    )


def list_recent(*, clinic_id: int, limit: int = 50) -> list[Conversation]:
    return list(
        db.session.scalars(
            select(Conversation)
            .options(joinedload(Conversation.contact), joinedload(Conversation.assignee))
            .where(Conversation.clinic_id == clinic_id)
            .order_by(Conversation.last_message_at.desc().nulls_last(), Conversation.id.desc())
            .limit(limit)
        )
    )


def messages(*, clinic_id: int, conversation_id: int, limit: int = 200) -> list[Message]:
    rows = db.session.scalars(
        select(Message)
        .options(joinedload(Message.author))
        .where(Message.clinic_id == clinic_id, Message.conversation_id == conversation_id)
        .order_by(Message.id.desc())
        .limit(limit)
    )
    return list(reversed(list(rows)))


def get_or_create_contact(*, clinic: Clinic, phone: str, name: str | None) -> Contact:
    try:
        e164 = normalize(phone, clinic.country if not phone.startswith("+") else None)
    except InvalidPhone:
        e164 = phone[:20]  # keep what the provider gave us rather than lose the message
    contact = db.session.scalar(select(Contact).where(Contact.clinic_id == clinic.id, Contact.phone == e164))
    if contact is None:
        contact = Contact(clinic_id=clinic.id, phone=e164, name=name or "")
        db.session.add(contact)
        db.session.flush()
    elif name and not contact.name:
        contact.name = name
    return contact


def get_or_create(
    *,
    connection: Connection,
    contact: Contact,
    initial_status: ConversationStatus = ConversationStatus.AWAITING_HUMAN,
) -> Conversation:
    conv = db.session.scalar(
        select(Conversation).where(
            Conversation.connection_id == connection.id, Conversation.contact_id == contact.id
        )
    )
    if conv is None:
        conv = Conversation(
            clinic_id=connection.clinic_id,
            connection_id=connection.id,
            contact_id=contact.id,
            status=initial_status,
        )
        db.session.add(conv)
        db.session.flush()
    return conv


def touch(conv: Conversation, *, at: datetime, preview: str, inbound: bool) -> None:
    """Update the list-facing fields after a message."""
    if conv.last_message_at is None or at >= conv.last_message_at:
        conv.last_message_at = at
        conv.last_message_preview = preview[:PREVIEW_LEN]
    if inbound:
        if conv.last_inbound_at is None or at > conv.last_inbound_at:
            conv.last_inbound_at = at
        conv.unread_count = (conv.unread_count or 0) + 1
        if conv.status in (ConversationStatus.CLOSED, ConversationStatus.BOT):
            conv.status = ConversationStatus.AWAITING_HUMAN
        if conv.status == ConversationStatus.AWAITING_HUMAN and conv.awaiting_since is None:
            conv.awaiting_since = at


def mark_read(conv: Conversation) -> None:
    if conv.unread_count:
        conv.unread_count = 0
        db.session.commit()
