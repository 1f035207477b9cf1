"""Fixtures for the inbox tests: conversations made through the real webhook path or directly."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from tests.helpers import patient_message, post_signed, sandbox_ids


@pytest.fixture
def inbound(client, sandbox_conn, run_worker, db):
    """Post a signed sandbox webhook for a patient message and run the worker; returns the conversation."""

    def send(text: str, phone: str = "+34612345678", name: str = "Maria Lopez", conn=None):
        from wa_portal.models import Contact, Conversation

        conn = conn or sandbox_conn
        body, _ = patient_message(conn, text, phone=phone, name=name)
        assert post_signed(client, body, sandbox_ids(conn)[2]).status_code == 200
        run_worker()
        db.session.expire_all()
        return db.session.scalar(
            select(Conversation)
            .join(Contact)
            .where(Contact.phone == phone, Conversation.connection_id == conn.id)
        )

    return send


@pytest.fixture
def conv(inbound):
    return inbound("Hello, I'd like an appointment")


@pytest.fixture
def colleague(clinic, make_user):
    return make_user(clinic, "therapist", email="ana@sunrise.test", name="Ana")


@pytest.fixture
def make_conv(db):
    """A conversation with one inbound message, straight into the database (for list tests)."""
    from wa_portal.models import (
        AuthorType,
        Contact,
        Conversation,
        ConversationStatus,
        Direction,
        Message,
        MessageStatus,
        utcnow,
    )

    counter = {"n": 0}

    def make(
        conn,
        *,
        name: str = "",
        phone: str | None = None,
        body: str = "hello",
        minutes_ago: int = 0,
        status: str = ConversationStatus.AWAITING_HUMAN,
        assignee_id: int | None = None,
        **kw: Any,
    ):
        counter["n"] += 1
        at = utcnow() - timedelta(minutes=minutes_ago)
        contact = Contact(clinic_id=conn.clinic_id, phone=phone or f"+3461100{counter['n']:04d}", name=name)
        db.session.add(contact)
        db.session.flush()
        conv = Conversation(
            clinic_id=conn.clinic_id,
            connection_id=conn.id,
            contact_id=contact.id,
            status=status,
            assignee_id=assignee_id,
            last_inbound_at=at,
            last_message_at=at,
            last_message_preview=body[:120],
            awaiting_since=at if status == ConversationStatus.AWAITING_HUMAN else None,
            **kw,
        )
        db.session.add(conv)
        db.session.flush()
        db.session.add(
            Message(
                clinic_id=conn.clinic_id,
                conversation_id=conv.id,
                connection_id=conn.id,
                direction=Direction.IN,
                body=body,
                author_type=AuthorType.PATIENT,
                status=MessageStatus.RECEIVED,
                created_at=at,
                provider_message_id=f"wamid.test{counter['n']}",
            )
        )
        db.session.commit()
        return conv

    return make
