"""Replies go out on the channel the patient wrote on; attachments reach each provider."""

from __future__ import annotations

from datetime import timedelta

from tests.delivery.conftest import PATIENT, messages_to

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


def _sms_conversation(db, sms_conn, contact):
    """A conversation on the Twilio number where the patient's last message came by SMS."""
    from wa_portal.models import Conversation, Direction, Message, utcnow

    conv = Conversation(
        clinic_id=sms_conn.clinic_id,
        connection_id=sms_conn.id,
        contact_id=contact.id,
        last_inbound_at=utcnow() - timedelta(minutes=2),
        reply_channel="sms",  # as ingest sets it (tests/e2e/test_twilio.py)
    )
    db.session.add(conv)
    db.session.flush()
    db.session.add(
        Message(
            clinic_id=conv.clinic_id,
            conversation_id=conv.id,
            connection_id=sms_conn.id,
            direction=Direction.IN,
            channel="sms",
            kind="text",
            body="Can I come at 5 instead?",
            provider_message_id="SMinbound0001",
            status="received",
            author_type="patient",
        )
    )
    db.session.commit()
    return conv


def test_reply_to_an_sms_goes_back_by_sms_from_the_same_number(
    db, drain, twilio, sms_conn, contact, staff, fast_delivery
):
    from wa_portal.services import messaging

    emu, _ = twilio
    conv = _sms_conversation(db, sms_conn, contact)
    msg = messaging.queue_reply(
        clinic_id=conv.clinic_id, conversation_id=conv.id, body="Yes, *5 pm* is fine.", author_id=staff.id
    )
    assert msg.channel == "sms"
    drain()
    db.session.expire_all()
    assert msg.status == "sent", msg.error_detail
    [sent] = emu.sent
    assert sent["to"] == PATIENT and sent["from"] == "+15005550006"  # no whatsapp: prefix
    assert sent["body"] == "Yes, 5 pm is fine."  # WhatsApp formatting stripped for SMS
    from sqlalchemy import select

    from wa_portal.models import DeliveryAttempt

    attempts = db.session.scalars(select(DeliveryAttempt).where(DeliveryAttempt.message_id == msg.id)).all()
    assert [(a.channel, a.outcome) for a in attempts] == [("sms", "sent")]  # WhatsApp never tried


def test_image_reaches_meta_as_an_upload_then_an_image_message(
    db, drain, graph, conversation, staff, fast_delivery
):
    from wa_portal.services import inbox_media

    msg = inbox_media.queue_attachment(
        clinic_id=conversation.clinic_id,
        conversation_id=conversation.id,
        author_id=staff.id,
        data=PNG,
        mime="image/png",
        filename="exercise-sheet.png",
        caption="Your exercises for this week",
    )
    drain()
    db.session.expire_all()
    assert msg.status == "sent", msg.error_detail
    uploads = [r for r in graph.requests() if r["method"] == "POST" and r["path"].endswith("/media")]
    assert len(uploads) == 1
    [sent] = messages_to(graph)
    body = sent["json"]
    assert body["type"] == "image"
    assert body["image"]["caption"] == "Your exercises for this week"
    assert body["image"]["id"]  # sent by the uploaded media id, not a public link


def _twilio_whatsapp_conn(clinic, twilio):
    from wa_portal.services import connections

    emu, url = twilio
    return connections.create_connection(
        clinic=clinic,
        provider="twilio",
        settings={
            "account_sid": emu.account_sid,
            "auth_token": emu.auth_token,
            "whatsapp_from": "+14155238886",
            "base_url": url,
        },
        label="Twilio WhatsApp",
    )


def test_document_through_twilio_is_a_signed_link_the_provider_can_fetch(
    app, db, drain, twilio, clinic, contact, staff, fast_delivery
):
    from wa_portal.models import Conversation, utcnow
    from wa_portal.services import inbox_media

    emu, _ = twilio
    conn = _twilio_whatsapp_conn(clinic, twilio)
    conv = Conversation(
        clinic_id=clinic.id, connection_id=conn.id, contact_id=contact.id, last_inbound_at=utcnow()
    )
    db.session.add(conv)
    db.session.commit()
    pdf = b"%PDF-1.4\n% invoice\n"
    msg = inbox_media.queue_attachment(
        clinic_id=clinic.id,
        conversation_id=conv.id,
        author_id=staff.id,
        data=pdf,
        mime="application/pdf",
        filename="invoice.pdf",
    )
    drain()
    db.session.expire_all()
    assert msg.status == "sent", msg.error_detail
    [sent] = emu.sent
    assert sent["to"] == f"whatsapp:{PATIENT}"
    [link] = sent["media_urls"]
    path = link.split("://", 1)[1].split("/", 1)[1]
    answer = app.test_client().get("/" + path)
    assert answer.status_code == 200 and answer.data == pdf
    assert answer.mimetype == "application/pdf"
    tampered = app.test_client().get("/" + path[:-2] + ("AA" if not path.endswith("AA") else "BB"))
    assert tampered.status_code == 404


def test_media_links_expire_and_never_serve_inbound_files(app, db, clinic, monkeypatch):
    import time

    from wa_portal.models import Conversation, Direction, Message
    from wa_portal.services import media_links

    token = media_links.token_for(clinic.id, 999_999)
    assert app.test_client().get(f"/media/out/{token}").status_code == 404  # no such message

    from wa_portal.models import Contact

    contact = Contact(clinic_id=clinic.id, phone="+34600999888", name="X")
    db.session.add(contact)
    db.session.flush()
    from wa_portal.services import connections

    conn = connections.create_connection(clinic=clinic, provider="sandbox", settings={}, label="S")
    conv = Conversation(clinic_id=clinic.id, connection_id=conn.id, contact_id=contact.id)
    db.session.add(conv)
    db.session.flush()
    inbound = Message(
        clinic_id=clinic.id,
        conversation_id=conv.id,
        connection_id=conn.id,
        direction=Direction.IN,
        kind="image",
        media_key=f"clinic-{clinic.id}/messages/1.png",
        media_status="stored",
        status="received",
        author_type="patient",
    )
    db.session.add(inbound)
    db.session.commit()
    from wa_portal.services.storage import get_storage

    get_storage().put(inbound.media_key, PNG, "image/png")  # the file exists: only the direction refuses
    token = media_links.token_for(clinic.id, inbound.id)
    assert app.test_client().get(f"/media/out/{token}").status_code == 404  # patients' files stay private

    issued = media_links.token_for(clinic.id, inbound.id)
    assert media_links.read_token(issued) == (clinic.id, inbound.id)
    now = time.time()
    monkeypatch.setattr(time, "time", lambda: now + 2 * 3600)
    assert media_links.read_token(issued) is None  # issued two hours ago: expired
