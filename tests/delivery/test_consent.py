"""STOP / START keywords through the real webhook → worker path, and who may be messaged afterwards."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from tests.helpers import patient_message, post_signed, sandbox_ids

PHONE = "+34612345678"


def _inbound(client, sandbox_conn, text):
    from wa_portal.models import WebhookEvent, WebhookState
    from wa_portal.services import ingest

    body, _ = patient_message(sandbox_conn, text, phone=PHONE)
    assert post_signed(client, body, sandbox_ids(sandbox_conn)[2]).status_code == 200
    # The webhook path enqueues ingest from its group-commit thread after answering: process the
    # stored event here (idempotent) so the test does not race that thread.
    from wa_portal.extensions import db

    for event_id in db.session.scalars(
        select(WebhookEvent.id).where(WebhookEvent.state == WebhookState.RECEIVED)
    ):
        ingest.process_event(event_id)


def _contact(db):
    from wa_portal.models import Contact

    db.session.expire_all()
    return db.session.scalar(select(Contact).where(Contact.phone == PHONE))


def _outbound(db, purpose):
    from wa_portal.models import Message

    return list(
        db.session.scalars(select(Message).where(Message.direction == "out", Message.purpose == purpose))
    )


@pytest.mark.parametrize("word", ["STOP", "Baja", "PARAR", "sair", "cancel all", "रोकें"])
def test_stop_word_opts_out_with_one_confirmation(db, client, sandbox_conn, drain, word):
    from wa_portal.models import ConsentEvent, Conversation

    _inbound(client, sandbox_conn, "Hello")
    drain()
    _inbound(client, sandbox_conn, word)
    drain()
    contact = _contact(db)
    assert contact.consent == "opted_out"
    assert contact.consent_source == "whatsapp keyword" and contact.consent_at is not None
    [confirmation] = _outbound(db, "consent")
    assert confirmation.status == "sent"
    assert (
        "no longer receive" in confirmation.body or "Ya no" in confirmation.body or "não" in confirmation.body
    )
    conv = db.session.scalar(select(Conversation))
    assert conv.status == "closed"
    [event] = db.session.scalars(select(ConsentEvent)).all()
    assert (event.old, event.new, event.source) == ("unknown", "opted_out", "whatsapp keyword")

    # A second STOP changes nothing and sends nothing.
    _inbound(client, sandbox_conn, "STOP")
    drain()
    assert len(_outbound(db, "consent")) == 1


def test_opted_out_gets_no_reminder_but_replies_after_writing_again_and_emergencies(
    db, client, clinic, sandbox_conn, staff, drain
):
    from wa_portal.models import Conversation
    from wa_portal.services import messaging

    _inbound(client, sandbox_conn, "STOP")
    drain()
    contact = _contact(db)
    reminder = messaging.queue_notification(
        clinic_id=clinic.id, contact_id=contact.id, purpose="reminder_1d", body="Reminder: tomorrow 10:00"
    )
    broadcast = messaging.queue_notification(
        clinic_id=clinic.id, contact_id=contact.id, purpose="broadcast", body="We are open on Saturday"
    )
    emergency = messaging.queue_notification(
        clinic_id=clinic.id,
        contact_id=contact.id,
        purpose="emergency",
        body="The clinic is closed today (flood).",
    )
    conv = db.session.scalar(select(Conversation))
    reply_before = messaging.queue_reply(
        clinic_id=clinic.id, conversation_id=conv.id, body="Sorry to see you go", author_id=staff.id
    )
    drain()
    db.session.expire_all()
    assert (reminder.status, reminder.error_detail) == ("failed", "Patient opted out")
    assert (broadcast.status, broadcast.error_detail) == ("failed", "Patient opted out")
    assert emergency.status == "sent"
    assert reply_before.status == "failed"

    _inbound(client, sandbox_conn, "Can I still book an appointment?")
    drain()
    reply_after = messaging.queue_reply(
        clinic_id=clinic.id, conversation_id=conv.id, body="Of course, when suits you?", author_id=staff.id
    )
    drain()
    db.session.expire_all()
    assert reply_after.status == "sent"

    clinic.settings = {"emergency_to_opted_out": False}
    db.session.commit()
    blocked = messaging.queue_notification(
        clinic_id=clinic.id, contact_id=contact.id, purpose="emergency", body="Closed again."
    )
    drain()
    db.session.expire_all()
    assert blocked.error_detail == "Patient opted out"


def test_start_opts_back_in_and_reminders_flow_again(db, client, clinic, sandbox_conn, drain):
    from wa_portal.models import ConsentEvent
    from wa_portal.services import messaging

    _inbound(client, sandbox_conn, "STOP")
    drain()
    _inbound(client, sandbox_conn, "START")
    drain()
    contact = _contact(db)
    assert contact.consent == "opted_in"
    assert len(_outbound(db, "consent")) == 2
    assert db.session.scalar(select(func.count()).select_from(ConsentEvent)) == 2
    msg = messaging.queue_notification(
        clinic_id=clinic.id, contact_id=contact.id, purpose="reminder_1d", body="Reminder: tomorrow 10:00"
    )
    drain()
    db.session.expire_all()
    assert msg.status == "sent"


def test_longer_sentence_with_stop_is_not_an_opt_out(db, client, sandbox_conn, drain):
    _inbound(client, sandbox_conn, "please stop the appointment reminders for my son")
    drain()
    assert _contact(db).consent == "unknown"
    assert _outbound(db, "consent") == []
