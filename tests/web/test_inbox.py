"""The inbox: list, thread, reply round trip through the worker, and tenant isolation."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from sqlalchemy import select

from tests.conftest import csrf_token
from tests.helpers import patient_message, post_signed, sandbox_ids
from wa_portal.models import Message, MessageStatus, utcnow
from wa_portal.services import sandbox


@pytest.fixture
def conversation(client, db, sandbox_conn, run_worker):
    body, _ = patient_message(sandbox_conn, "Hello, I'd like an appointment")
    post_signed(client, body, sandbox_ids(sandbox_conn)[2])
    run_worker()
    from wa_portal.models import Conversation

    return db.session.scalar(select(Conversation))


def test_inbox_lists_the_conversation(client, login, staff, conversation):
    login(staff)
    html = client.get("/inbox").get_data(as_text=True)
    assert "Maria Lopez" in html
    assert "Hello, I&#39;d like an appointment" in html


def test_list_fragment_for_htmx(client, login, staff, conversation):
    login(staff)
    resp = client.get("/inbox", headers={"HX-Request": "true"})
    html = resp.get_data(as_text=True)
    assert "HX-Request" in resp.headers["Vary"]
    assert html.lstrip().startswith('<nav id="conversation-list"')
    assert "<html" not in html


def test_opening_a_conversation_marks_it_read(client, login, staff, conversation, db):
    login(staff)
    assert conversation.unread_count == 1
    html = client.get(f"/inbox/c/{conversation.id}").get_data(as_text=True)
    assert "Window closes in" in html
    db.session.refresh(conversation)
    assert conversation.unread_count == 0


def test_reply_reaches_the_patient_phone(client, login, staff, conversation, sandbox_conn, run_worker, db):
    login(staff)
    token = csrf_token(client, f"/inbox/c/{conversation.id}")
    resp = client.post(
        f"/inbox/c/{conversation.id}/messages",
        data={"body": "Of course! Tuesday at 10:00?", "csrf_token": token},
        headers={"HX-Request": "true"},
    )
    assert resp.status_code == 200
    assert 'data-status="queued"' in resp.get_data(as_text=True)
    msg = db.session.scalar(select(Message).where(Message.direction == "out"))
    assert msg.status == MessageStatus.QUEUED and msg.author_id == staff.id
    run_worker()
    db.session.refresh(msg)
    assert msg.status == MessageStatus.SENT
    phone = sandbox.phone_log(sandbox_conn, "+34612345678")
    assert [e["text"] for e in phone if e["direction"] == "to_patient"] == ["Of course! Tuesday at 10:00?"]


def test_empty_reply_is_refused_with_a_reason(client, login, staff, conversation, db):
    login(staff)
    token = csrf_token(client, f"/inbox/c/{conversation.id}")
    resp = client.post(
        f"/inbox/c/{conversation.id}/messages",
        data={"body": "   ", "csrf_token": token},
        headers={"HX-Request": "true"},
    )
    assert resp.status_code == 422
    assert db.session.scalar(select(Message).where(Message.direction == "out")) is None


def test_reply_after_24_hours_fails_with_the_window_reason(
    client, login, staff, conversation, run_worker, db
):
    login(staff)
    token = csrf_token(client, f"/inbox/c/{conversation.id}")
    with time_machine.travel(utcnow() + timedelta(hours=25)):
        html = client.get(f"/inbox/c/{conversation.id}").get_data(as_text=True)
        assert "24-hour window closed" in html
        client.post(f"/inbox/c/{conversation.id}/messages", data={"body": "late", "csrf_token": token})
        run_worker()
    msg = db.session.scalar(select(Message).where(Message.direction == "out"))
    assert msg.status == MessageStatus.FAILED
    assert msg.error_detail == "24-hour window closed: choose a template"


def test_recipient_not_on_whatsapp_fails_with_readable_reason(
    client, login, staff, db, sandbox_conn, run_worker
):
    body, _ = patient_message(sandbox_conn, "hi", phone="+34612340000")
    post_signed(client, body, sandbox_ids(sandbox_conn)[2])
    run_worker()
    from wa_portal.models import Conversation

    conv = db.session.scalar(select(Conversation))
    login(staff)
    token = csrf_token(client, f"/inbox/c/{conv.id}")
    client.post(f"/inbox/c/{conv.id}/messages", data={"body": "hello", "csrf_token": token})
    run_worker()
    html = client.get(f"/inbox/c/{conv.id}").get_data(as_text=True)
    assert "cannot receive WhatsApp messages" in html
    assert 'data-status="failed"' in html


def test_other_clinic_cannot_see_or_reply(client, login, conversation, make_clinic, make_user, db):
    other = make_clinic("northside")
    outsider = make_user(other, "admin")
    login(outsider)
    assert client.get(f"/inbox/c/{conversation.id}").status_code == 404
    assert client.get(f"/inbox/c/{conversation.id}?fragment=thread").status_code == 404
    assert "Maria Lopez" not in client.get("/inbox").get_data(as_text=True)
    token = csrf_token(client, "/inbox")
    resp = client.post(f"/inbox/c/{conversation.id}/messages", data={"body": "hi", "csrf_token": token})
    assert resp.status_code == 404
    assert db.session.scalar(select(Message).where(Message.direction == "out")) is None
    assert client.get("/sandbox/phone").status_code == 404  # no sandbox number of their own


def test_media_route_is_clinic_checked(client, login, conversation, make_clinic, make_user, db, staff):
    msg = db.session.scalar(select(Message))
    msg.media_status, msg.media_key, msg.media_mime = "stored", f"clinic-{msg.clinic_id}/x.txt", "text/plain"
    db.session.commit()
    from wa_portal.services.storage import get_storage

    get_storage().put(msg.media_key, b"hello", "text/plain")
    login(staff)
    assert client.get(f"/media/{msg.id}").data == b"hello"
    client.post("/logout", data={"csrf_token": csrf_token(client, "/inbox")})
    login(make_user(make_clinic("northside"), "admin"))
    assert client.get(f"/media/{msg.id}").status_code == 404
